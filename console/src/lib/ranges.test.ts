import assert from "node:assert/strict";
import { test } from "node:test";
import { RANGES, rangeByLabel, window } from "./ranges.ts";

test("every range asks for whole-minute buckets and at most 1,500 of them", () => {
  for (const range of RANGES) {
    assert.equal(range.intervalSeconds % 60, 0, range.label);
    assert.ok(range.seconds / range.intervalSeconds <= 1500, range.label);
  }
});

test("a day is drawn from the 1-minute rollup: 1,440 buckets", () => {
  const day = rangeByLabel("24 h");
  assert.equal(day.intervalSeconds, 60);
  assert.equal(day.seconds / day.intervalSeconds, 1440);
});

test("a range ends now; an unknown label is the first range", () => {
  assert.deepEqual(window(rangeByLabel("1 h"), 7_200_000), { startMs: 3_600_000, endMs: 7_200_000 });
  assert.equal(rangeByLabel("nope"), RANGES[0]);
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { RANGES, rangeByLabel, window } from "./ranges.ts";

test("every range asks for whole-minute buckets and at most 500 of them", () => {
  for (const range of RANGES) {
    assert.equal(range.intervalSeconds % 60, 0, range.label);
    assert.ok(range.seconds / range.intervalSeconds <= 500, range.label);
  }
});

test("a range ends now; an unknown label is the first range", () => {
  assert.deepEqual(window(rangeByLabel("1 h"), 7_200_000), { startMs: 3_600_000, endMs: 7_200_000 });
  assert.equal(rangeByLabel("nope"), RANGES[0]);
});

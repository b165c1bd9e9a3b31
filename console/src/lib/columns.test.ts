import assert from "node:assert/strict";
import { test } from "node:test";
import { secondsFromMicros } from "./columns.ts";

test("microseconds become Unix seconds, fraction kept, order kept", () => {
  const seconds = secondsFromMicros([1_764_892_800_000_000n, 1_764_892_860_500_000n]);
  assert.ok(seconds instanceof Float64Array);
  assert.deepEqual([...seconds], [1_764_892_800, 1_764_892_860.5]);
});

test("no buckets, no seconds", () => {
  assert.equal(secondsFromMicros([]).length, 0);
});

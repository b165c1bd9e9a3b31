import assert from "node:assert/strict";
import { test } from "node:test";
import { visibleRows } from "./windowing.ts";

test("a screenful plus overscan is drawn, whatever the list's length", () => {
  assert.deepEqual(visibleRows(0, 400, 40, 1000, 5), { start: 0, end: 15, offset: 0, total: 40_000 });
  const middle = visibleRows(20_000, 400, 40, 1000, 5);
  assert.deepEqual(middle, { start: 495, end: 515, offset: 19_800, total: 40_000 });
});

test("the window stays inside the list at its end and when it is short or empty", () => {
  assert.deepEqual(visibleRows(39_600, 400, 40, 1000, 5), { start: 985, end: 1000, offset: 39_400, total: 40_000 });
  assert.deepEqual(visibleRows(0, 400, 40, 3, 5), { start: 0, end: 3, offset: 0, total: 120 });
  assert.deepEqual(visibleRows(500, 400, 40, 0, 5), { start: 0, end: 0, offset: 0, total: 0 });
});

test("a scroll offset beyond a list that just got shorter shows its end", () => {
  assert.deepEqual(visibleRows(39_800, 400, 40, 2, 5), { start: 0, end: 2, offset: 0, total: 80 });
  assert.deepEqual(visibleRows(39_800, 400, 40, 100, 5), { start: 85, end: 100, offset: 3_400, total: 4_000 });
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { Ring } from "./ring.ts";

test("points come out in columns, in the order pushed", () => {
  const ring = new Ring(4);
  assert.equal(ring.push([1, 2, 3], [10, 20, 30]), 3);
  const [times, values] = ring.columns();
  assert.deepEqual([...times], [1, 2, 3]);
  assert.deepEqual([...values], [10, 20, 30]);
});

test("a full ring drops its oldest points and keeps its capacity", () => {
  const ring = new Ring(3);
  ring.push([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]);
  assert.equal(ring.length, 3);
  assert.deepEqual([...ring.columns()[0]], [3, 4, 5]);
  ring.push([6], [6]);
  assert.deepEqual([...ring.columns()[1]], [4, 5, 6]);
});

test("points not newer than the last are skipped (live replay after history)", () => {
  const ring = new Ring(10);
  ring.push([1, 2, 3], [1, 2, 3]);
  assert.equal(ring.push([2, 3, 3.5, 3.5, 4], [0, 0, 35, 0, 4]), 2);
  assert.deepEqual([...ring.columns()[0]], [1, 2, 3, 3.5, 4]);
  assert.deepEqual([...ring.columns()[1]], [1, 2, 3, 35, 4]);
});

test("clear empties the ring; a bad capacity is refused", () => {
  const ring = new Ring(2);
  ring.push([1], [1]);
  ring.clear();
  assert.equal(ring.length, 0);
  assert.equal(ring.lastTime, -Infinity);
  assert.throws(() => new Ring(0), RangeError);
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { axisPercent, backoffMs, ImageUrls, REPLAY_LIMIT_MS, resumeFromMs, stripSlots } from "./frames.ts";

test("the strip's slots cover the range evenly, end to end", () => {
  const slots = stripSlots(1000, 25_000, 24);
  assert.equal(slots.length, 24);
  assert.deepEqual(slots[0], { startMs: 1000, endMs: 2000 });
  assert.equal(slots[23].endMs, 25_000);
  for (let i = 1; i < slots.length; i++) assert.equal(slots[i].startMs, slots[i - 1].endMs);
  assert.deepEqual(stripSlots(5, 5), []);
  assert.equal(stripSlots(0, 7 * 86_400_000).length, 24);
});

test("a time's place on the axis is a percentage within 0-100", () => {
  assert.equal(axisPercent(150, 100, 200), 50);
  assert.equal(axisPercent(50, 100, 200), 0);
  assert.equal(axisPercent(250, 100, 200), 100);
  assert.equal(axisPercent(150, 200, 200), 0);
});

test("a live view resumes from its newest frame, within the replay limit, or starts live", () => {
  const now = 10 * REPLAY_LIMIT_MS;
  assert.equal(resumeFromMs(now - 5000, now), now - 5000);
  assert.equal(resumeFromMs(now - 2 * REPLAY_LIMIT_MS, now), now - REPLAY_LIMIT_MS + 60_000);
  assert.equal(resumeFromMs(undefined, now), undefined);
});

test("reconnects back off from 1 s to at most 30 s", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 50].map(backoffMs), [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
});

test("an image replaced under its key has its old URL revoked", async () => {
  const urls = new ImageUrls();
  const first = urls.set("live", new Uint8Array([1, 2, 3]), "image/jpeg");
  const second = urls.set("live", new Uint8Array([4, 5]), "image/jpeg");
  assert.notEqual(first, second);
  assert.equal(urls.size, 1);
  assert.equal(urls.get("live"), second);
  // A revoked URL no longer resolves to its blob (Node's Blob registry, as a browser's).
  const { resolveObjectURL } = await import("node:buffer");
  assert.equal(resolveObjectURL(first), undefined);
  assert.equal((await resolveObjectURL(second)?.arrayBuffer())?.byteLength, 2);
  urls.set("thumb-1", new Uint8Array([9]), "image/png");
  urls.clear();
  assert.equal(urls.size, 0);
  assert.equal(resolveObjectURL(second), undefined);
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { isFinished, sendableAsIs, stateLabel } from "./commands.ts";

test("a command is sent with one click only when it needs no parameter", () => {
  assert.equal(sendableAsIs({ name: "ping", parameters: [] }), true);
  assert.equal(sendableAsIs({ name: "read", parameters: [{ required: false }] }), true);
  assert.equal(sendableAsIs({ name: "set", parameters: [{ required: true }] }), false);
});

test("finished states end the watch; states read as words", () => {
  assert.equal(isFinished(1), false); // QUEUED
  assert.equal(isFinished(3), false); // DELIVERED
  assert.equal(isFinished(4), true); // SUCCEEDED
  assert.equal(isFinished(7), true); // TIMED_OUT
  assert.equal(stateLabel("COMMAND_STATE_TIMED_OUT"), "timed out");
});

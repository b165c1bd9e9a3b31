import assert from "node:assert/strict";
import { test } from "node:test";
import { isFinished, stateLabel } from "./commands.ts";

test("finished states end the watch; states read as words", () => {
  assert.equal(isFinished(1), false); // QUEUED
  assert.equal(isFinished(3), false); // DELIVERED
  assert.equal(isFinished(4), true); // SUCCEEDED
  assert.equal(isFinished(7), true); // TIMED_OUT
  assert.equal(stateLabel("COMMAND_STATE_TIMED_OUT"), "timed out");
});

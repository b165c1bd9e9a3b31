import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { callMessage, signInMessage } from "./errors.ts";

test("a refused key gets a clear message that says what to paste", () => {
  const message = signInMessage(new ConnectError("unknown API key", Code.Unauthenticated));
  assert.match(message, /not accepted/);
  assert.match(message, /admin\.key/);
  assert.match(signInMessage(new ConnectError("device", Code.PermissionDenied)), /device tokens/);
  assert.match(signInMessage(new ConnectError("down", Code.Unavailable)), /is sensormesh running/);
});

test("other failures name their code", () => {
  assert.equal(callMessage(new ConnectError("no such device", Code.NotFound)), "NotFound: no such device");
});

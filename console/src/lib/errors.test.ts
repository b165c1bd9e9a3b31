import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { callMessage, signInMessage, ssoCallerMessage } from "./errors.ts";

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

test("a single sign-on token sensormesh refuses, or one without a role, is said so", () => {
  const refused = ssoCallerMessage(new ConnectError("Jwt verification fails", Code.Unauthenticated));
  assert.match(refused, /refused the single sign-on token \(Jwt verification fails\)/);
  assert.match(refused, /Sign in again/);
  const roleless = ssoCallerMessage(new ConnectError("no 'sensormesh_role' claim", Code.PermissionDenied));
  assert.match(roleless, /gives you no role: no 'sensormesh_role' claim/);
});

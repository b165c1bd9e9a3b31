import assert from "node:assert/strict";
import { test } from "node:test";
import { callbackParameters, expiredMessage, expiryDelay, isExpired, parseStoredToken } from "./ssoSession.ts";

test("the provider's answer is found in the fragment or the query, never in a page's route", () => {
  assert.equal(callbackParameters({ search: "", hash: "#code=c&state=s" })?.get("code"), "c");
  assert.equal(callbackParameters({ search: "?code=c&state=s", hash: "" })?.get("state"), "s");
  assert.equal(callbackParameters({ search: "?error=access_denied&state=s", hash: "" })?.get("error"), "access_denied");
  assert.equal(callbackParameters({ search: "", hash: "#/devices/greenhouse-pi" }), null);
  assert.equal(callbackParameters({ search: "?from=bookmark", hash: "" }), null);
  assert.equal(callbackParameters({ search: "?code=c", hash: "" }), null); // no state: not an answer
});

test("a kept token expires when the provider said, and says so", () => {
  const token = { accessToken: "eyJ.a.b", expiresAt: 10_000 };
  assert.deepEqual(parseStoredToken(JSON.stringify(token)), token);
  assert.equal(parseStoredToken("{"), null);
  assert.equal(parseStoredToken(JSON.stringify({ accessToken: "" , expiresAt: null})), null);
  assert.equal(isExpired(token, 9_999), false);
  assert.equal(isExpired(token, 10_000), true);
  assert.equal(expiryDelay(token, 4_000), 6_000);
  assert.equal(expiryDelay(token, 20_000), 0);
  assert.equal(expiryDelay({ ...token, expiresAt: null }, 0), null);
  assert.equal(expiryDelay({ ...token, expiresAt: 90 * 86_400_000 }, 0), 2 ** 31 - 1);
  assert.match(expiredMessage(10_000), /session ended at .*token expired\. Sign in again\./);
});

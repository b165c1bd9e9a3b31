import assert from "node:assert/strict";
import { test } from "node:test";
import { loadConfig, parseConfig } from "./config.ts";

test("no single sign-on: sso is null", () => {
  assert.deepEqual(parseConfig({ sso: null }), { sso: null });
});

test("a provider's settings are read, the audience optional", () => {
  const sso = { issuer: "https://login.example.com/", clientId: "console", scopes: "openid", audience: null };
  assert.deepEqual(parseConfig({ sso }), { sso });
  assert.equal(parseConfig({ sso: { ...sso, audience: "sensormesh" } }).sso?.audience, "sensormesh");
});

test("a malformed document is an error naming the field", () => {
  assert.throws(() => parseConfig([]), /"sso"/);
  assert.throws(() => parseConfig({ sso: { issuer: "https://x/", scopes: "openid" } }), /sso\.clientId/);
  assert.throws(() => parseConfig({ sso: { issuer: "", clientId: "c", scopes: "openid" } }), /sso\.issuer/);
});

test("a server without the document (404) means API keys only; another failure is an error", async () => {
  const answer = (status: number, body = "") => async () => new Response(body, { status });
  assert.deepEqual(await loadConfig(answer(404)), { sso: null });
  await assert.rejects(loadConfig(answer(500)), /HTTP 500/);
  assert.deepEqual(await loadConfig(answer(200, '{"sso":null}')), { sso: null });
});

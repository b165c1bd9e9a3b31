import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import type { SsoConfig } from "./config.ts";
import { beginSignIn, completeSignIn, type Store } from "./sso.ts";
import { PENDING_KEY, SsoError } from "./ssoSession.ts";

const ISSUER = "https://login.example.com/";
const CONFIG: SsoConfig = { issuer: ISSUER, clientId: "console", scopes: "openid", audience: "sensormesh" };
const REDIRECT = "https://sensormesh.example.com/";

class MemoryStore implements Store {
  items = new Map<string, string>();
  getItem(key: string) {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    this.items.set(key, value);
  }
  removeItem(key: string) {
    this.items.delete(key);
  }
}

/** A provider as fetch sees it: discovery, and a token endpoint that checks code and verifier. */
function provider(options: { modes?: string[]; tokenBody?: Record<string, unknown> } = {}) {
  const issued = new Map<string, string>(); // code -> code_challenge
  const requests: URLSearchParams[] = [];
  const fetchImpl = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const json = (body: unknown, status = 200) =>
      new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
    if (url.pathname === "/.well-known/openid-configuration") {
      return json({
        issuer: ISSUER,
        authorization_endpoint: `${ISSUER}authorize`,
        token_endpoint: `${ISSUER}token`,
        ...(options.modes ? { response_modes_supported: options.modes } : {}),
      });
    }
    if (url.pathname === "/token") {
      const body = new URLSearchParams(String(init?.body));
      requests.push(body);
      const challenge = issued.get(body.get("code") ?? "");
      issued.delete(body.get("code") ?? "");
      const computed = createHash("sha256").update(body.get("code_verifier") ?? "").digest("base64url");
      if (challenge === undefined || challenge !== computed) {
        return json({ error: "invalid_grant", error_description: "PKCE verification failed" }, 400);
      }
      return json(options.tokenBody ?? { access_token: "eyJ.access.token", token_type: "Bearer", expires_in: 300 });
    }
    return new Response("not found", { status: 404 });
  };
  /** What the provider's authorize endpoint would do: remember the challenge, answer with a code. */
  const authorize = (authorizationUrl: string, code = "code-1") => {
    const asked = new URL(authorizationUrl).searchParams;
    issued.set(code, asked.get("code_challenge") ?? "");
    return new URLSearchParams({ code, state: asked.get("state") ?? "" });
  };
  return { fetch: fetchImpl as typeof fetch, authorize, requests };
}

test("sign-in sends the tab to the provider with a PKCE challenge, a state and the audience", async () => {
  const idp = provider();
  const storage = new MemoryStore();
  const href = await beginSignIn(CONFIG, { storage, fetch: idp.fetch, redirectUri: REDIRECT, returnTo: "#/alerts" });
  const url = new URL(href);
  assert.equal(`${url.origin}${url.pathname}`, `${ISSUER}authorize`);
  const p = url.searchParams;
  assert.equal(p.get("client_id"), "console");
  assert.equal(p.get("redirect_uri"), REDIRECT);
  assert.equal(p.get("response_type"), "code");
  assert.equal(p.get("code_challenge_method"), "S256");
  assert.equal(p.get("audience"), "sensormesh");
  assert.equal(p.get("response_mode"), "fragment"); // discovery's default modes include it
  const pending = JSON.parse(storage.getItem(PENDING_KEY) ?? "{}");
  assert.equal(pending.state, p.get("state"));
  assert.equal(createHash("sha256").update(pending.verifier).digest("base64url"), p.get("code_challenge"));
  assert.equal(pending.returnTo, "#/alerts");
});

test("a provider that answers in the query only is not asked for the fragment", async () => {
  const idp = provider({ modes: ["query"] });
  const href = await beginSignIn(CONFIG, { storage: new MemoryStore(), fetch: idp.fetch, redirectUri: REDIRECT, returnTo: "" });
  assert.equal(new URL(href).searchParams.has("response_mode"), false);
});

test("the answer exchanges the code with the verifier for the access token, once", async () => {
  const idp = provider();
  const storage = new MemoryStore();
  const href = await beginSignIn(CONFIG, { storage, fetch: idp.fetch, redirectUri: REDIRECT, returnTo: "#/alerts" });
  const answer = idp.authorize(href);
  const done = await completeSignIn(CONFIG, answer, { storage, fetch: idp.fetch, now: () => 1_000_000 });
  assert.deepEqual(done, { token: { accessToken: "eyJ.access.token", expiresAt: 1_300_000 }, returnTo: "#/alerts" });
  const sent = idp.requests[0];
  assert.equal(sent.get("grant_type"), "authorization_code");
  assert.equal(sent.get("redirect_uri"), REDIRECT);
  assert.equal(sent.get("client_id"), "console");
  assert.equal(storage.getItem(PENDING_KEY), null);
  // The same answer again (a reload of the callback): nothing pending any more.
  await assert.rejects(completeSignIn(CONFIG, answer, { storage, fetch: idp.fetch }), /started no single sign-on/);
});

test("a wrong PKCE verifier: the provider's refusal is said, no token", async () => {
  const idp = provider();
  const storage = new MemoryStore();
  const href = await beginSignIn(CONFIG, { storage, fetch: idp.fetch, redirectUri: REDIRECT, returnTo: "" });
  const pending = JSON.parse(storage.getItem(PENDING_KEY) ?? "{}");
  storage.setItem(PENDING_KEY, JSON.stringify({ ...pending, verifier: "x".repeat(64) }));
  await assert.rejects(
    completeSignIn(CONFIG, idp.authorize(href), { storage, fetch: idp.fetch }),
    (e: unknown) => e instanceof SsoError && /issued no token \(invalid_grant: PKCE verification failed\)/.test(e.message),
  );
});

test("an answer with another state, or the provider's error, is refused before any exchange", async () => {
  const idp = provider();
  const storage = new MemoryStore();
  await beginSignIn(CONFIG, { storage, fetch: idp.fetch, redirectUri: REDIRECT, returnTo: "" });
  await assert.rejects(
    completeSignIn(CONFIG, new URLSearchParams({ code: "c", state: "someone-else" }), { storage, fetch: idp.fetch }),
    /does not belong to this tab's sign-in/,
  );
  const href = await beginSignIn(CONFIG, { storage, fetch: idp.fetch, redirectUri: REDIRECT, returnTo: "" });
  const state = new URL(href).searchParams.get("state") ?? "";
  const denied = new URLSearchParams({ error: "access_denied", error_description: "no access", state });
  await assert.rejects(completeSignIn(CONFIG, denied, { storage, fetch: idp.fetch }), /refused the sign-in \(access_denied: no access\)/);
  assert.equal(idp.requests.length, 0);
});

test("an unreachable provider is named", async () => {
  const down = (async () => {
    throw new TypeError("Failed to fetch");
  }) as typeof fetch;
  await assert.rejects(
    beginSignIn(CONFIG, { storage: new MemoryStore(), fetch: down, redirectUri: REDIRECT, returnTo: "" }),
    /Could not reach the identity provider at https:\/\/login\.example\.com\/ \(Failed to fetch\)/,
  );
});

test("http is for a provider on this machine only", async () => {
  const local = { ...CONFIG, issuer: "http://127.0.0.1:8081/" };
  const json = async () => new Response(JSON.stringify({ issuer: "http://127.0.0.1:8081/", authorization_endpoint: "http://127.0.0.1:8081/a" }), { headers: { "content-type": "application/json" } });
  const href = await beginSignIn(local, { storage: new MemoryStore(), fetch: json as typeof fetch, redirectUri: REDIRECT, returnTo: "" });
  assert.match(href, /^http:\/\/127\.0\.0\.1:8081\/a\?/);
  const remote = { ...CONFIG, issuer: "http://login.example.com/" };
  await assert.rejects(
    beginSignIn(remote, { storage: new MemoryStore(), fetch: json as typeof fetch, redirectUri: REDIRECT, returnTo: "" }),
    /only requests to HTTPS are allowed/,
  );
});

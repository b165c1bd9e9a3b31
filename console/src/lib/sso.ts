/**
 * Single sign-on by the identity provider's redirect: the OpenID Connect authorization code flow
 * with PKCE for a public client (no secret), done by oauth4webapi (panva): discovery, the
 * authorization response's checks (state, issuer, error), the code exchange with the PKCE
 * verifier, and the token response's checks (an ID token's issuer, audience and expiry, when one
 * comes). This module only keeps what the round trip needs in the tab's session storage (state,
 * verifier, where to go back to) and turns every failure into words a person can act on.
 *
 * The console keeps the access token and sends it as `authorization: Bearer`: it is the token a
 * provider issues for an API, whose audience is the one Envoy's jwt_authn provider lists and whose
 * claims carry the role (SENSORMESH_SSO_ROLE_CLAIM). The ID token is for the console alone (its
 * audience is the console's client id), so it is checked and dropped.
 */
import * as oauth from "oauth4webapi";
import type { SsoConfig } from "./config.ts";
import { PENDING_KEY, SsoError, type SsoToken } from "./ssoSession.ts";

interface Pending {
  state: string;
  verifier: string;
  redirectUri: string;
  returnTo: string;
}

export type Store = Pick<Storage, "getItem" | "setItem" | "removeItem">;

export interface FlowEnv {
  storage: Store;
  fetch?: typeof fetch;
  now?: () => number;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host.endsWith(".localhost") || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function requestOptions(config: SsoConfig, env: FlowEnv): oauth.DiscoveryRequestOptions & oauth.TokenEndpointRequestOptions {
  const issuer = new URL(config.issuer);
  // http only for a provider on this machine, as the console's server allows (settings.py).
  const local = issuer.protocol === "http:" && isLoopback(issuer.hostname);
  return {
    [oauth.allowInsecureRequests]: local,
    ...(env.fetch ? { [oauth.customFetch]: env.fetch } : {}),
  };
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function discover(config: SsoConfig, env: FlowEnv): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(config.issuer);
  let response: Response;
  try {
    response = await oauth.discoveryRequest(issuer, requestOptions(config, env));
  } catch (error) {
    throw new SsoError(`Could not reach the identity provider at ${config.issuer} (${reason(error)}).`);
  }
  try {
    return await oauth.processDiscoveryResponse(issuer, response);
  } catch (error) {
    throw new SsoError(`The identity provider at ${config.issuer} sent no usable discovery document (${reason(error)}).`);
  }
}

/**
 * Starts a sign-in: keeps a fresh state and PKCE verifier in `env.storage` and returns the
 * provider's authorization URL to send the tab to. The provider sends it back to `redirectUri`
 * (the console's own page) with the code, in the fragment where the provider supports it, so the
 * code reaches no server's log.
 */
export async function beginSignIn(
  config: SsoConfig,
  env: FlowEnv & { redirectUri: string; returnTo: string },
): Promise<string> {
  const as = await discover(config, env);
  if (!as.authorization_endpoint) throw new SsoError(`The identity provider at ${config.issuer} names no authorization endpoint.`);
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set("client_id", config.clientId);
  url.searchParams.set("redirect_uri", env.redirectUri);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("scope", config.scopes);
  url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(verifier));
  url.searchParams.set("code_challenge_method", "S256");
  url.searchParams.set("state", state);
  if (config.audience) url.searchParams.set("audience", config.audience);
  // Discovery's default when the provider does not say is ["query", "fragment"].
  if ((as.response_modes_supported ?? ["query", "fragment"]).includes("fragment")) {
    url.searchParams.set("response_mode", "fragment");
  }
  const pending: Pending = { state, verifier, redirectUri: env.redirectUri, returnTo: env.returnTo };
  env.storage.setItem(PENDING_KEY, JSON.stringify(pending));
  return url.href;
}

function readPending(storage: Store): Pending | null {
  const raw = storage.getItem(PENDING_KEY);
  storage.removeItem(PENDING_KEY); // one answer per sign-in, whatever happens to it
  if (!raw) return null;
  try {
    const p = JSON.parse(raw) as Partial<Pending>;
    if (typeof p.state === "string" && typeof p.verifier === "string" && typeof p.redirectUri === "string") {
      return { state: p.state, verifier: p.verifier, redirectUri: p.redirectUri, returnTo: p.returnTo ?? "" };
    }
  } catch {
    // an unreadable entry is no sign-in
  }
  return null;
}

function tokenRequestFailed(config: SsoConfig, error: unknown): SsoError {
  return new SsoError(
    `Could not reach the identity provider's token endpoint (${reason(error)}). If it is not on ` +
      `${new URL(config.issuer).origin}, add its origin to SENSORMESH_CONSOLE_SSO_CONNECT_ORIGINS.`,
  );
}

/**
 * Completes a sign-in from the provider's answer: checks it against the state this tab kept,
 * exchanges the code with the PKCE verifier, and returns the access token and where to go back to.
 * Throws SsoError saying what went wrong: the provider's own error, an answer not meant for this
 * tab, a refused exchange (a wrong verifier: invalid_grant).
 */
export async function completeSignIn(
  config: SsoConfig,
  params: URLSearchParams,
  env: FlowEnv,
): Promise<{ token: SsoToken; returnTo: string }> {
  const pending = readPending(env.storage);
  if (pending === null) throw new SsoError("This tab started no single sign-on, or its answer was already used: sign in again.");
  const as = await discover(config, env);
  const client: oauth.Client = { client_id: config.clientId };
  let validated: URLSearchParams;
  try {
    validated = oauth.validateAuthResponse(as, client, params, pending.state);
  } catch (error) {
    if (error instanceof oauth.AuthorizationResponseError) {
      const detail = error.error_description ? `: ${error.error_description}` : "";
      throw new SsoError(`The identity provider refused the sign-in (${error.error}${detail}).`);
    }
    throw new SsoError(`The identity provider's answer does not belong to this tab's sign-in (${reason(error)}): sign in again.`);
  }
  const options = requestOptions(config, env);
  let response: Response;
  try {
    response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), validated, pending.redirectUri, pending.verifier, options);
  } catch (error) {
    throw tokenRequestFailed(config, error);
  }
  let result: oauth.TokenEndpointResponse;
  try {
    result = await oauth.processAuthorizationCodeResponse(as, client, response);
  } catch (error) {
    if (error instanceof oauth.ResponseBodyError) {
      const detail = error.error_description ? `: ${error.error_description}` : "";
      throw new SsoError(`The identity provider issued no token (${error.error}${detail}). Sign in again.`);
    }
    throw new SsoError(`The identity provider's token answer was not valid (${reason(error)}).`);
  }
  const now = (env.now ?? Date.now)();
  const expiresAt = typeof result.expires_in === "number" ? now + result.expires_in * 1000 : null;
  return { token: { accessToken: result.access_token, expiresAt }, returnTo: pending.returnTo };
}

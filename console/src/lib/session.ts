/**
 * Who is signed in: a pasted API key or a single sign-on access token (either kept in the tab's
 * session storage, so it is gone when the tab closes), the clients made with it, and the caller
 * the services say it is (GetCaller). The one store the pages share, beside `notice`: why the
 * last session ended or a sign-in failed, which the sign-in page shows.
 */
import { get, writable } from "svelte/store";
import type { GetCallerResponse } from "../gen/sensormesh/v1/access_pb";
import { createApi, type Api } from "./api";
import type { ConsoleConfig } from "./config";
import { ssoCallerMessage } from "./errors";
import {
  callbackParameters,
  expiredMessage,
  expiryDelay,
  isExpired,
  parseStoredToken,
  REFUSED_TOKEN_MESSAGE,
  SsoError,
  TOKEN_KEY,
  type SsoToken,
} from "./ssoSession";

const STORAGE_KEY = "sensormesh.apiKey";

export interface Session {
  api: Api;
  caller: GetCallerResponse;
  /** The single sign-on token, or null for a key. */
  sso: SsoToken | null;
}

export const session = writable<Session | null>(null);
export const notice = writable<string>("");

let expiryTimer: ReturnType<typeof setTimeout> | undefined;

/** Signs in with `key`; throws the call's error (UNAUTHENTICATED for a bad key) and keeps nothing. */
export async function signIn(key: string): Promise<void> {
  const api = createApi(key.trim());
  const caller = await api.access.getCaller({});
  sessionStorage.setItem(STORAGE_KEY, key.trim());
  session.set({ api, caller, sso: null });
  notice.set("");
}

/** Ends the session with `message` on the sign-in page. */
function end(message: string): void {
  signOut();
  notice.set(message);
}

function watchExpiry(token: SsoToken): void {
  clearTimeout(expiryTimer);
  const delay = expiryDelay(token, Date.now());
  if (delay === null) return;
  expiryTimer = setTimeout(() => {
    if (get(session)?.sso !== token) return;
    if (isExpired(token, Date.now())) end(expiredMessage(token.expiresAt));
    else watchExpiry(token); // past setTimeout's longest delay
  }, delay);
}

/** Signs in with a single sign-on token; throws GetCaller's error and keeps nothing. */
async function signInWithToken(token: SsoToken): Promise<void> {
  const onUnauthenticated = () => {
    const current = get(session);
    if (current !== null && current.sso === token) end(REFUSED_TOKEN_MESSAGE);
  };
  const api = createApi(token.accessToken, { onUnauthenticated });
  const caller = await api.access.getCaller({});
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify(token));
  session.set({ api, caller, sso: token });
  notice.set("");
  watchExpiry(token);
}

async function completeRedirect(config: ConsoleConfig, params: URLSearchParams): Promise<void> {
  // The provider's answer leaves the address bar (and the history) at once, whatever comes of it.
  history.replaceState(null, "", window.location.pathname);
  if (config.sso === null) {
    notice.set("This console has no single sign-on configured: sign in with an API key.");
    return;
  }
  try {
    const { completeSignIn } = await import("./sso"); // the flow's own chunk, loaded only now
    const { token, returnTo } = await completeSignIn(config.sso, params, { storage: sessionStorage });
    await signInWithToken(token);
    if (returnTo.startsWith("#/")) history.replaceState(null, "", `${window.location.pathname}${returnTo}`);
  } catch (error) {
    notice.set(error instanceof SsoError ? error.message : ssoCallerMessage(error));
  }
}

/**
 * On load: completes a single sign-on the provider sent the tab back from, or signs in again
 * with what this tab kept (a key, or a token that has not expired). Nothing kept or refused:
 * no session, and `notice` says why where there is a reason.
 */
export async function resume(config: ConsoleConfig): Promise<void> {
  const params = callbackParameters(window.location);
  if (params !== null) return completeRedirect(config, params);
  const key = sessionStorage.getItem(STORAGE_KEY);
  if (key) {
    try {
      await signIn(key);
    } catch {
      sessionStorage.removeItem(STORAGE_KEY);
    }
    return;
  }
  const token = parseStoredToken(sessionStorage.getItem(TOKEN_KEY));
  if (token === null || config.sso === null) {
    sessionStorage.removeItem(TOKEN_KEY);
    return;
  }
  if (isExpired(token, Date.now())) return end(expiredMessage(token.expiresAt));
  try {
    await signInWithToken(token);
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    notice.set(ssoCallerMessage(error));
  }
}

export function signOut(): void {
  clearTimeout(expiryTimer);
  sessionStorage.removeItem(STORAGE_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  session.set(null);
  notice.set("");
}

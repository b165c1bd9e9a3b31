/**
 * Single sign-on's light half, in the first load: the kept token and its expiry, the provider's
 * answer in the page's URL, the messages. The flow itself (sso.ts, with oauth4webapi) is loaded
 * only when a sign-in starts or an answer comes back, so a console signed into by key (or
 * without single sign-on) never downloads it.
 */

/** The sign-in under way: state and PKCE verifier, read once when the provider sends the tab back. */
export const PENDING_KEY = "sensormesh.sso.pending";
/** The signed-in token and when it expires. */
export const TOKEN_KEY = "sensormesh.sso.token";
// setTimeout's longest delay (about 24.8 days): a later expiry is checked again then.
const LONGEST_TIMER_MS = 2 ** 31 - 1;

export interface SsoToken {
  accessToken: string;
  /** Milliseconds since the epoch (the token response's expires_in), or null when not said. */
  expiresAt: number | null;
}

/** A sign-in that did not complete, with a message for the sign-in page. */
export class SsoError extends Error {}

function answer(text: string): URLSearchParams | null {
  const params = new URLSearchParams(text);
  return params.has("state") && (params.has("code") || params.has("error")) ? params : null;
}

/** The provider's answer in the page's URL (fragment or query), or null when this is no callback. */
export function callbackParameters(location: { search: string; hash: string }): URLSearchParams | null {
  const fromHash = location.hash.startsWith("#/") ? null : answer(location.hash.slice(1));
  return fromHash ?? answer(location.search.slice(1));
}

/** A kept token, or null for none or an unreadable one. */
export function parseStoredToken(raw: string | null): SsoToken | null {
  if (!raw) return null;
  try {
    const t = JSON.parse(raw) as Partial<SsoToken>;
    if (typeof t.accessToken === "string" && t.accessToken !== "" && (typeof t.expiresAt === "number" || t.expiresAt === null)) {
      return { accessToken: t.accessToken, expiresAt: t.expiresAt };
    }
  } catch {
    // fall through
  }
  return null;
}

export function isExpired(token: SsoToken, now: number): boolean {
  return token.expiresAt !== null && token.expiresAt <= now;
}

/** Milliseconds until the token expires (0 when it has), capped to what setTimeout takes; null: never said. */
export function expiryDelay(token: SsoToken, now: number): number | null {
  if (token.expiresAt === null) return null;
  return Math.min(Math.max(token.expiresAt - now, 0), LONGEST_TIMER_MS);
}

export function expiredMessage(expiresAt: number | null): string {
  const at = expiresAt === null ? "" : ` at ${new Date(expiresAt).toLocaleTimeString()}`;
  return `Your single sign-on session ended${at}: the token expired. Sign in again.`;
}

export const REFUSED_TOKEN_MESSAGE =
  "sensormesh refused the single sign-on token (expired, altered, or not issued for it). Sign in again.";

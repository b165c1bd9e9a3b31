/** What the console tells a person when a call fails, from the call's gRPC status code. */
import { Code, ConnectError } from "@connectrpc/connect";

/** Why a pasted key was not taken, in words a person can act on. */
export function signInMessage(error: unknown): string {
  const e = ConnectError.from(error);
  switch (e.code) {
    case Code.Unauthenticated:
      return "That key was not accepted: it is unknown, revoked or expired. Paste an operator key (smak_...), such as the one in .sensormesh/admin.key.";
    case Code.PermissionDenied:
      return "That is not an operator key: device tokens (smdt_...) cannot sign in to the console.";
    case Code.Unavailable:
    case Code.Unknown:
      return `The services did not answer (${e.rawMessage || "unavailable"}); is sensormesh running?`;
    case Code.ResourceExhausted:
      return "Too many attempts: wait a moment and try again.";
    default:
      return `Sign-in failed: ${e.rawMessage}`;
  }
}

/** A failed call's message, for a page's error line. */
export function callMessage(error: unknown): string {
  const e = ConnectError.from(error);
  return `${Code[e.code] ?? e.code}: ${e.rawMessage}`;
}

/** Why sensormesh did not take a single sign-on token the provider issued. */
export function ssoCallerMessage(error: unknown): string {
  const e = ConnectError.from(error);
  switch (e.code) {
    case Code.Unauthenticated:
      return `sensormesh refused the single sign-on token (${e.rawMessage || "not valid"}): it expired, was altered, or was not issued for sensormesh. Sign in again.`;
    case Code.PermissionDenied:
      return `You are signed in at the identity provider, but sensormesh gives you no role: ${e.rawMessage}`;
    default:
      return signInMessage(error);
  }
}

/**
 * The console's runtime configuration, `/console-config.json`, written by its file server from
 * the SENSORMESH_CONSOLE_SSO_* settings (sensormesh_console/settings.py): whether single sign-on
 * is configured and, if so, the identity provider and the console's client id there.
 */

export interface SsoConfig {
  /** The provider's issuer URL; discovery at `<issuer>/.well-known/openid-configuration`. */
  issuer: string;
  /** The console's public client (no secret) at the provider. */
  clientId: string;
  /** Space-separated scopes asked for. */
  scopes: string;
  /** `audience` for the authorization request (providers such as Auth0), or null. */
  audience: string | null;
}

export interface ConsoleConfig {
  sso: SsoConfig | null;
}

export const CONFIG_PATH = "/console-config.json";
export const NO_SSO: ConsoleConfig = { sso: null };

function text(value: unknown, name: string): string {
  if (typeof value !== "string" || value === "") throw new Error(`${CONFIG_PATH}: sso.${name} must be a non-empty string`);
  return value;
}

/** The document's JSON, checked: an Error naming the field for anything else. */
export function parseConfig(body: unknown): ConsoleConfig {
  if (typeof body !== "object" || body === null || !("sso" in body)) {
    throw new Error(`${CONFIG_PATH}: expected an object with "sso"`);
  }
  const sso = (body as { sso: unknown }).sso;
  if (sso === null) return NO_SSO;
  if (typeof sso !== "object") throw new Error(`${CONFIG_PATH}: sso must be an object or null`);
  const fields = sso as Record<string, unknown>;
  const audience = fields.audience ?? null;
  return {
    sso: {
      issuer: text(fields.issuer, "issuer"),
      clientId: text(fields.clientId, "clientId"),
      scopes: text(fields.scopes, "scopes"),
      audience: audience === null ? null : text(audience, "audience"),
    },
  };
}

/** Fetches and checks the document; a console served without one (an older server) has no SSO. */
export async function loadConfig(fetchImpl: typeof fetch = fetch): Promise<ConsoleConfig> {
  const response = await fetchImpl(CONFIG_PATH, { cache: "no-cache" });
  if (response.status === 404) return NO_SSO;
  if (!response.ok) throw new Error(`${CONFIG_PATH}: HTTP ${response.status}`);
  return parseConfig(await response.json());
}

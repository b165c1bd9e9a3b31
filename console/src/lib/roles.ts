/**
 * What a role may do in the console, by the contract's access rules (access_rule.proto): a
 * viewer reads; an operator also sends commands and acknowledges alerts; an admin also manages
 * keys and reads the audit log. The console shows no button its caller may not use; the
 * services enforce the same rules whatever a client shows.
 */
import type { Role } from "../gen/sensormesh/v1/access_rule_pb";

// Role's values (erased enums cannot be imported into node's test runner, so named here).
export const ROLE_VIEWER = 1 as Role;
export const ROLE_OPERATOR = 2 as Role;
export const ROLE_ADMIN = 3 as Role;

export type Action = "read" | "sendCommand" | "acknowledgeAlert" | "manageKeys" | "readAudit";

const LEAST_ROLE: Record<Action, Role> = {
  read: ROLE_VIEWER,
  sendCommand: ROLE_OPERATOR,
  acknowledgeAlert: ROLE_OPERATOR,
  manageKeys: ROLE_ADMIN,
  readAudit: ROLE_ADMIN,
};

export function can(role: Role | undefined, action: Action): boolean {
  return role !== undefined && role >= LEAST_ROLE[action];
}

const NAMES: Record<number, string> = { 1: "viewer", 2: "operator", 3: "admin" };

export function roleName(role: Role | undefined): string {
  return NAMES[role ?? 0] ?? "none";
}

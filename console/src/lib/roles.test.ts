import assert from "node:assert/strict";
import { test } from "node:test";
import { ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER, can, roleName } from "./roles.ts";

test("a viewer only reads", () => {
  assert.equal(can(ROLE_VIEWER, "read"), true);
  for (const action of ["sendCommand", "acknowledgeAlert", "manageKeys", "readAudit"] as const) {
    assert.equal(can(ROLE_VIEWER, action), false, action);
  }
});

test("an operator sends commands but manages no keys; an admin does everything", () => {
  assert.equal(can(ROLE_OPERATOR, "sendCommand"), true);
  assert.equal(can(ROLE_OPERATOR, "manageKeys"), false);
  assert.equal(can(ROLE_ADMIN, "manageKeys"), true);
  assert.equal(can(ROLE_ADMIN, "readAudit"), true);
  assert.equal(can(undefined, "read"), false);
  assert.equal(roleName(ROLE_OPERATOR), "operator");
  assert.equal(roleName(undefined), "none");
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { deviceHref, parseRoute } from "./route.ts";

test("fragments name the pages", () => {
  assert.deepEqual(parseRoute(""), { page: "fleet" });
  assert.deepEqual(parseRoute("#/"), { page: "fleet" });
  assert.deepEqual(parseRoute("#/alerts"), { page: "alerts" });
  assert.deepEqual(parseRoute("#/keys"), { page: "keys" });
  assert.deepEqual(parseRoute("#/audit"), { page: "audit" });
  assert.deepEqual(parseRoute(deviceHref("greenhouse-pi")), { page: "device", deviceId: "greenhouse-pi" });
  assert.deepEqual(parseRoute("#/devices/Bad_Id"), { page: "notFound", hash: "#/devices/Bad_Id" });
});

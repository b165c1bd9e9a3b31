import assert from "node:assert/strict";
import { test } from "node:test";
import { ago, isOnline, matches, type FleetRow } from "./fleet.ts";

const row: FleetRow = {
  deviceId: "greenhouse-pi",
  displayName: "Greenhouse",
  labels: { site: "north", tier: "prod" },
  lastSeenMs: 1_000_000,
};

test("online means an upload within the last minute", () => {
  assert.equal(isOnline(row, 1_000_000 + 60_000), true);
  assert.equal(isOnline(row, 1_000_000 + 60_001), false);
  assert.equal(isOnline({ ...row, lastSeenMs: undefined }, 0), false);
});

test("search matches every word in id, name or key=value labels", () => {
  assert.equal(matches(row, ""), true);
  assert.equal(matches(row, "GREEN"), true);
  assert.equal(matches(row, "site=north pi"), true);
  assert.equal(matches(row, "site=south"), false);
  assert.equal(matches(row, "green vibration"), false);
});

test("last seen reads as a short age", () => {
  assert.equal(ago(undefined, 0), "never");
  assert.equal(ago(0, 12_000), "12 s ago");
  assert.equal(ago(0, 5 * 60_000), "5 min ago");
  assert.equal(ago(0, 3 * 3_600_000), "3 h ago");
  assert.equal(ago(0, 2 * 86_400_000), "2 d ago");
});

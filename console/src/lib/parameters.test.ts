import assert from "node:assert/strict";
import { test } from "node:test";
import { BOOLEAN, INTEGER, NUMBER, STRING, checkParameters } from "./parameters.ts";

const input = { name: "input", type: STRING, required: true, allowedValues: ["sim-imu", "sim-environment"] };
const seconds = { name: "seconds", type: NUMBER, required: true, allowedValues: [], minimum: 0.001, maximum: 86400 };
const count = { name: "count", type: INTEGER, required: false, allowedValues: [] };
const on = { name: "on", type: BOOLEAN, required: false, allowedValues: [] };
const note = { name: "note", type: STRING, required: false, allowedValues: [] };

test("typed values are sent as their JSON types; empty optional ones are left out", () => {
  const checked = checkParameters([input, seconds, count, on, note], {
    input: "sim-imu", seconds: 0.5, count: "3", on: "false", note: "!keep as typed",
  });
  assert.deepEqual(checked, {
    ok: true, parameters: { input: "sim-imu", seconds: 0.5, count: 3, on: false, note: "!keep as typed" },
  });
  assert.deepEqual(checkParameters([input, count, on], { input: "sim-imu", count: null, on: "" }), {
    ok: true, parameters: { input: "sim-imu" },
  });
});

test("the first wrong field is named with what is wrong", () => {
  const wrong = (form: Record<string, string | number | null>) => checkParameters([input, seconds, count], form);
  assert.deepEqual(wrong({ seconds: 1 }), { ok: false, field: "input", message: "input: is required" });
  assert.equal(wrong({ input: "sim-gps", seconds: 1 }).ok, false);
  assert.deepEqual(wrong({ input: "sim-gps", seconds: 1 }), {
    ok: false, field: "input", message: "input: must be one of sim-imu, sim-environment",
  });
  assert.deepEqual(wrong({ input: "sim-imu", seconds: 0 }), {
    ok: false, field: "seconds", message: "seconds: must be at least 0.001",
  });
  assert.deepEqual(wrong({ input: "sim-imu", seconds: "1e9" }), {
    ok: false, field: "seconds", message: "seconds: must be at most 86400",
  });
  assert.deepEqual(wrong({ input: "sim-imu", seconds: "soon" }), {
    ok: false, field: "seconds", message: "seconds: must be a number",
  });
  assert.deepEqual(wrong({ input: "sim-imu", seconds: 1, count: "2.5" }), {
    ok: false, field: "count", message: "count: must be a whole number",
  });
});

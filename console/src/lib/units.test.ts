import assert from "node:assert/strict";
import { test } from "node:test";
import { decimal, formatValue, unitLabel } from "./units.ts";

test("stored UCUM units read the usual way", () => {
  assert.equal(unitLabel("Cel"), "°C");
  assert.equal(unitLabel("dB[mW]"), "dBm");
  assert.equal(unitLabel("hPa"), "hPa");
  assert.equal(unitLabel("furlong"), "furlong");
});

test("values keep at most three decimals and drop trailing zeros", () => {
  assert.equal(decimal(15.5619), "15.562");
  assert.equal(decimal(15.5), "15.5");
  assert.equal(decimal(58), "58");
  assert.equal(formatValue(15.5619, "Cel"), "15.562 °C");
  assert.equal(formatValue(-57, "dB[mW]"), "-57 dBm");
  assert.equal(formatValue(3.8125, ""), "3.813");
});

test("byte counts are scaled", () => {
  assert.equal(formatValue(18923783896, "By"), "18.9 GB");
  assert.equal(formatValue(6076216104, "By"), "6.1 GB");
  assert.equal(formatValue(2_500_000, "By"), "2.5 MB");
  assert.equal(formatValue(512, "By"), "512 B");
});

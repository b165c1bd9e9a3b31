import assert from "node:assert/strict";
import { test } from "node:test";
import { batteryFigure, lowestOf, orderByFor, signalFigure } from "./linkHealth.ts";

test("a battery reads as whole percent rounded down, marked low below 20 %", () => {
  assert.deepEqual(batteryFigure(57.4), { text: "57 %", low: false });
  assert.deepEqual(batteryFigure(20), { text: "20 %", low: false });
  assert.deepEqual(batteryFigure(19.6), { text: "19 %", low: true });
  assert.deepEqual(batteryFigure(3), { text: "3 %", low: true });
  assert.deepEqual(batteryFigure(undefined), { text: "–", low: false });
});

test("a signal reads as whole dBm rounded down, marked weak below -90 dBm", () => {
  assert.deepEqual(signalFigure(-71.2), { text: "-72 dBm", low: false });
  assert.deepEqual(signalFigure(-90), { text: "-90 dBm", low: false });
  assert.deepEqual(signalFigure(-90.4), { text: "-91 dBm", low: true });
  assert.deepEqual(signalFigure(-97), { text: "-97 dBm", low: true });
  assert.deepEqual(signalFigure(0.2), { text: "0 dBm", low: false });
  assert.deepEqual(signalFigure(Number.NaN), { text: "–", low: false });
});

test("each fleet order names ListDevices' order_by, the id order by default", () => {
  assert.equal(orderByFor("Device id"), "");
  assert.equal(orderByFor("Lowest battery"), "lowest_battery_level.value");
  assert.equal(orderByFor("Weakest signal"), "weakest_signal_strength.value");
  assert.equal(orderByFor("nonsense"), "");
});

test("a device's lowest battery is the smallest latest battery_level among its sensors", () => {
  const latest = [
    { sensor: "ble:b", quantity: "battery_level", value: 40 },
    { sensor: "env", quantity: "temperature", value: 5 },
    { sensor: "ble:a", quantity: "battery_level", value: 40 },
    { sensor: "ble:c", quantity: "battery_level", value: 71 },
    { sensor: "ble:c", quantity: "signal_strength", value: -80 },
  ];
  assert.equal(lowestOf(latest, "battery_level")?.sensor, "ble:a");
  assert.equal(lowestOf(latest, "signal_strength")?.value, -80);
  assert.equal(lowestOf(latest, "link_quality"), undefined);
});

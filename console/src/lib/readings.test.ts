import assert from "node:assert/strict";
import { test } from "node:test";
import { valueOf, valuesOf } from "./readings.ts";

test("an environment reading gives its set quantities by history's names", () => {
  const payload = { case: "environment", value: { temperatureCelsius: 21.5, pressureHpa: 1013 } } as const;
  assert.deepEqual(valuesOf({ payload } as never), [
    { quantity: "temperature", value: 21.5 },
    { quantity: "pressure", value: 1013 },
  ]);
});

test("64-bit disk figures become numbers; a measurement goes by its own name", () => {
  const system = { case: "system", value: { diskFreeBytes: 5000n } } as const;
  assert.equal(valueOf({ payload: system } as never, "disk_free"), 5000);
  const measurement = { case: "measurement", value: { name: "soil_moisture", value: 41.5, unit: "%" } } as const;
  assert.equal(valueOf({ payload: measurement } as never, "soil_moisture"), 41.5);
  assert.equal(valueOf({ payload: measurement } as never, "temperature"), undefined);
});

test("an empty payload has no values", () => {
  assert.deepEqual(valuesOf({ payload: { case: undefined, value: undefined } } as never), []);
});

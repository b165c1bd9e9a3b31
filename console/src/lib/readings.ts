/**
 * A live reading's values by quantity name, as history names them (ListReadings' `quantity`,
 * sensormesh_core/storage/schema.py): the typed payloads' fields without their unit suffix,
 * a generic measurement under its own name.
 */
import type { Reading } from "../gen/sensormesh/v1/reading_pb";

export interface QuantityValue {
  quantity: string;
  value: number;
}

type Fields = Record<string, number | bigint | undefined>;

// Payload field -> quantity, per typed payload (the oneof case).
const QUANTITIES: Record<string, Record<string, string>> = {
  imu: {
    accelerationXMps2: "acceleration_x",
    accelerationYMps2: "acceleration_y",
    accelerationZMps2: "acceleration_z",
    angularRateXDps: "angular_rate_x",
    angularRateYDps: "angular_rate_y",
    angularRateZDps: "angular_rate_z",
  },
  environment: {
    temperatureCelsius: "temperature",
    relativeHumidityPercent: "relative_humidity",
    pressureHpa: "pressure",
  },
  system: {
    cpuTemperatureCelsius: "cpu_temperature",
    diskUsedBytes: "disk_used",
    diskFreeBytes: "disk_free",
  },
  linkHealth: {
    batteryLevelPercent: "battery_level",
    batteryVoltageVolts: "battery_voltage",
    signalStrengthDbm: "signal_strength",
    linkQualityPercent: "link_quality",
  },
};

/** Every value a reading carries; optional fields left unset are absent. */
export function valuesOf(reading: Pick<Reading, "payload">): QuantityValue[] {
  const payload = reading.payload;
  if (payload.case === undefined) return [];
  if (payload.case === "measurement") {
    return [{ quantity: payload.value.name, value: payload.value.value }];
  }
  const names = QUANTITIES[payload.case] ?? {};
  const fields = payload.value as unknown as Fields;
  const found: QuantityValue[] = [];
  for (const [field, quantity] of Object.entries(names)) {
    const value = fields[field];
    if (value !== undefined) found.push({ quantity, value: Number(value) });
  }
  return found;
}

/** The value of one quantity in a reading, or undefined when it carries none. */
export function valueOf(reading: Pick<Reading, "payload">, quantity: string): number | undefined {
  return valuesOf(reading).find((v) => v.quantity === quantity)?.value;
}

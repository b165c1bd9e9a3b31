/**
 * A device's lowest battery and weakest signal (Device.lowest_battery_level and
 * weakest_signal_strength) as the console shows them: a short figure, a warning when low, and
 * the fleet orders ListDevices offers by them.
 */

/** Below this battery level (percent) a device is marked: its battery wants replacing soon. */
export const LOW_BATTERY_PERCENT = 20;
/** Below this signal strength (dBm) a device is marked: its link is weak. */
export const WEAK_SIGNAL_DBM = -90;

/** The fleet's orders: the current one (by id) and ListDevices' `order_by` by each extreme. */
export const FLEET_ORDERS = [
  { label: "Device id", orderBy: "" },
  { label: "Lowest battery", orderBy: "lowest_battery_level.value" },
  { label: "Weakest signal", orderBy: "weakest_signal_strength.value" },
] as const;

/** ListDevices' `order_by` for an order's label; the id order for an unknown one. */
export function orderByFor(label: string): string {
  return FLEET_ORDERS.find((o) => o.label === label)?.orderBy ?? "";
}

export interface Figure {
  /** "23 %", "-91 dBm", or "–" when the device has not reported it. */
  text: string;
  /** Whether the value is past its warning threshold. */
  low: boolean;
}

// Whole percents and dBm, rounded down: the figure never reads better than the value, so a
// marked figure is always one below its threshold (19.6 % reads "19 %", not a marked "20 %").
function rounded(value: number): string {
  const r = Math.floor(value);
  return Object.is(r, -0) ? "0" : String(r);
}

/** A battery level (percent) as a figure; `undefined` when none was reported. */
export function batteryFigure(percent: number | undefined): Figure {
  if (percent === undefined || !Number.isFinite(percent)) return { text: "–", low: false };
  return { text: `${rounded(percent)} %`, low: percent < LOW_BATTERY_PERCENT };
}

/** A signal strength (dBm) as a figure; `undefined` when none was reported. */
export function signalFigure(dbm: number | undefined): Figure {
  if (dbm === undefined || !Number.isFinite(dbm)) return { text: "–", low: false };
  return { text: `${rounded(dbm)} dBm`, low: dbm < WEAK_SIGNAL_DBM };
}

/** What lowestOf needs of a latest value (GetLatestReadings' LatestValue). */
export interface SensorValue {
  sensor: string;
  quantity: string;
  value: number;
}

/**
 * The smallest latest value of a quantity among a device's sensors, with its sensor: the same
 * extreme as Device.lowest_battery_level (`battery_level`) and weakest_signal_strength
 * (`signal_strength`), from the device page's refreshed latest values. Undefined when no
 * sensor reported it; ties go to the first sensor by name.
 */
export function lowestOf<T extends SensorValue>(values: readonly T[], quantity: string): T | undefined {
  let lowest: T | undefined;
  for (const v of values) {
    if (v.quantity !== quantity) continue;
    if (lowest === undefined || v.value < lowest.value || (v.value === lowest.value && v.sensor < lowest.sensor)) {
      lowest = v;
    }
  }
  return lowest;
}

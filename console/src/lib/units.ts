/**
 * Values as people read them: the UCUM units the contract stores (`Cel`, `dB[mW]`, `By`, ...)
 * written the usual way, and byte counts scaled to kB, MB or GB.
 */

const LABELS: Record<string, string> = {
  Cel: "°C",
  "dB[mW]": "dBm",
  "m/s2": "m/s²",
  "deg/s": "°/s",
  By: "B",
};

const BYTE_STEPS: readonly [number, string][] = [
  [1e12, "TB"],
  [1e9, "GB"],
  [1e6, "MB"],
  [1e3, "kB"],
];

/** "Cel" -> "°C"; a unit without a usual spelling is shown as stored. */
export function unitLabel(unit: string): string {
  return LABELS[unit] ?? unit;
}

/** A number with at most `places` decimals, without trailing zeros: 15.5, 1010.701, 58. */
export function decimal(value: number, places = 3): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(places)));
}

/** A value with its unit for a table cell: "15.56 °C", "-57 dBm", "18.9 GB". */
export function formatValue(value: number, unit: string): string {
  if (unit === "By") {
    const step = BYTE_STEPS.find(([size]) => Math.abs(value) >= size);
    if (step) return `${decimal(value / step[0], 1)} ${step[1]}`;
  }
  const label = unitLabel(unit);
  if (label === "%") return `${decimal(value)} %`;
  return label ? `${decimal(value)} ${label}` : decimal(value);
}

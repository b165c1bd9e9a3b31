/**
 * History ranges the device page offers, each with the bucket width it asks ListReadings for:
 * widths of whole minutes and hours are served from the rollups (1 minute, 1 hour) rather than
 * the raw rows. A day is drawn at 1 minute (1,440 buckets, straight from the 1-minute rollup)
 * and every range stays near or below 1,500 buckets: what a chart as wide as a screen shows.
 */
export interface HistoryRange {
  label: string;
  seconds: number;
  intervalSeconds: number;
}

export const RANGES: readonly HistoryRange[] = [
  { label: "15 min", seconds: 15 * 60, intervalSeconds: 60 },
  { label: "1 h", seconds: 3600, intervalSeconds: 60 },
  { label: "6 h", seconds: 6 * 3600, intervalSeconds: 300 },
  { label: "24 h", seconds: 86_400, intervalSeconds: 60 },
  { label: "7 d", seconds: 7 * 86_400, intervalSeconds: 600 },
];

/** The range with this label, or the first. */
export function rangeByLabel(label: string): HistoryRange {
  return RANGES.find((r) => r.label === label) ?? RANGES[0];
}

/** The [start, end) of a range ending now, in Unix milliseconds. */
export function window(range: HistoryRange, nowMs: number): { startMs: number; endMs: number } {
  return { startMs: nowMs - range.seconds * 1000, endMs: nowMs };
}

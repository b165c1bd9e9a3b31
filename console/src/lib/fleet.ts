/** The fleet page's logic: which devices are online, and which match a search. */

/** A device that uploaded within this long is shown online. */
export const ONLINE_WITHIN_MS = 60_000;

export interface FleetRow {
  deviceId: string;
  displayName: string;
  labels: Record<string, string>;
  /** Unix milliseconds of the last upload; undefined: never. */
  lastSeenMs: number | undefined;
}

export function isOnline(row: FleetRow, nowMs: number): boolean {
  return row.lastSeenMs !== undefined && nowMs - row.lastSeenMs <= ONLINE_WITHIN_MS;
}

/**
 * Whether a device matches a search: every word of the query (case-insensitive) is found in its
 * id, its display name or one of its labels written `key=value`. An empty query matches all.
 */
export function matches(row: FleetRow, query: string): boolean {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const haystack = [row.deviceId, row.displayName, ...Object.entries(row.labels).map(([k, v]) => `${k}=${v}`)]
    .join("\n")
    .toLowerCase();
  return words.every((word) => haystack.includes(word));
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago", or "never". */
export function ago(lastSeenMs: number | undefined, nowMs: number): string {
  if (lastSeenMs === undefined) return "never";
  const seconds = Math.max(0, Math.round((nowMs - lastSeenMs) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

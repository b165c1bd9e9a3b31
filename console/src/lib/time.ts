/** Protobuf Timestamps as the console uses them. */
import type { Timestamp } from "@bufbuild/protobuf/wkt";

/** Unix seconds, with the fraction: uPlot's time scale. */
export function seconds(timestamp: Timestamp | undefined): number {
  if (timestamp === undefined) return NaN;
  return Number(timestamp.seconds) + timestamp.nanos / 1e9;
}

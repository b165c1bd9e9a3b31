/**
 * ListReadings' columnar answers (READINGS_VIEW_COLUMNS) as uPlot's x values: bucket starts
 * arrive as packed int64 microseconds (bigints in protobuf-es), and uPlot's time scale wants
 * Unix seconds as numbers. One typed array per series, no object per bucket.
 */

/** Unix microseconds -> Unix seconds with the fraction, in one Float64Array. */
export function secondsFromMicros(micros: ArrayLike<bigint>): Float64Array {
  const out = new Float64Array(micros.length);
  for (let i = 0; i < micros.length; i++) {
    // Exact: every time before the year 2255 is below 2^53 microseconds (query.proto).
    out[i] = Number(micros[i]) / 1e6;
  }
  return out;
}

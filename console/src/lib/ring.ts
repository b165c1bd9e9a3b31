/**
 * A fixed-capacity, time-ordered window of points in columnar form, as uPlot wants its data
 * (`[times, values]`). The arrays are allocated once: when the window is full, the oldest
 * points are dropped by shifting in place, so a chart fed for hours holds the same memory
 * as one fed for a minute. `times` are Unix seconds (uPlot's x scale), `values` numbers.
 */
export class Ring {
  readonly capacity: number;
  private readonly times: Float64Array;
  private readonly values: Float64Array;
  private size = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`capacity must be a positive integer, not ${capacity}`);
    }
    this.capacity = capacity;
    this.times = new Float64Array(capacity);
    this.values = new Float64Array(capacity);
  }

  get length(): number {
    return this.size;
  }

  /** The newest time held, or -Infinity when empty. */
  get lastTime(): number {
    return this.size === 0 ? -Infinity : this.times[this.size - 1];
  }

  clear(): void {
    this.size = 0;
  }

  /**
   * Appends points in time order. A point not newer than the last one held is skipped: the live
   * feed may replay what history already returned, and uPlot needs strictly ordered x values.
   * Returns how many points were appended.
   */
  push(times: ArrayLike<number>, values: ArrayLike<number>): number {
    let appended = 0;
    for (let i = 0; i < times.length; i++) {
      const t = times[i];
      if (!(t > this.lastTime)) continue;
      if (this.size === this.capacity) {
        this.times.copyWithin(0, 1);
        this.values.copyWithin(0, 1);
        this.size--;
      }
      this.times[this.size] = t;
      this.values[this.size] = values[i];
      this.size++;
      appended++;
    }
    return appended;
  }

  /** uPlot's data: views on the held points, no copy. Valid until the next push or clear. */
  columns(): [Float64Array, Float64Array] {
    return [this.times.subarray(0, this.size), this.values.subarray(0, this.size)];
  }
}

/**
 * The device page's camera logic: where the frame strip looks for frames along the history
 * axis, where a live view resumes its feed, and the object URLs that hold the images (one per
 * image shown; revoked when replaced, so an open page holds a bounded number of images).
 */

/** At most this many thumbnails in a strip, whatever the range. */
export const STRIP_FRAMES = 24;
/** WatchFrames replays at most an hour back (WatchFramesRequest.start_time). */
export const REPLAY_LIMIT_MS = 3_600_000;

export interface Slot {
  startMs: number;
  endMs: number;
}

/**
 * `count` equal slots covering [startMs, endMs): the strip shows the first frame of each, so its
 * thumbnails are spread evenly over the range and asking for them costs `count` one-frame
 * pages, not a listing of every frame (7 days of a frame every 5 s is 120,960 frames).
 */
export function stripSlots(startMs: number, endMs: number, count: number = STRIP_FRAMES): Slot[] {
  if (!(endMs > startMs) || count < 1) return [];
  const slots: Slot[] = [];
  for (let i = 0; i < count; i++) {
    slots.push({
      startMs: Math.round(startMs + ((endMs - startMs) * i) / count),
      endMs: Math.round(startMs + ((endMs - startMs) * (i + 1)) / count),
    });
  }
  return slots;
}

/** Where a time falls on the axis of [startMs, endMs], in percent of its width, within 0-100. */
export function axisPercent(timeMs: number, startMs: number, endMs: number): number {
  if (!(endMs > startMs)) return 0;
  return Math.min(100, Math.max(0, ((timeMs - startMs) / (endMs - startMs)) * 100));
}

/**
 * Where a live view (re)opens WatchFrames: from the newest frame it shows, so frames captured
 * while it was away are replayed (the newest itself comes again and is skipped by sequence);
 * no further back than the replay limit allows (with a minute's margin for clocks); live only
 * when it shows no frame yet.
 */
export function resumeFromMs(newestCaptureMs: number | undefined, nowMs: number): number | undefined {
  if (newestCaptureMs === undefined) return undefined;
  return Math.max(newestCaptureMs, nowMs - REPLAY_LIMIT_MS + 60_000);
}

/** The pause before reconnect attempt `attempt` (0, 1, ...): 1 s doubling to at most 30 s. */
export function backoffMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.min(Math.max(attempt, 0), 5));
}

/**
 * Object URLs of images by key. Setting a key revokes the URL it held, `clear` revokes all:
 * a live view that replaces its image every few seconds for hours holds one image, not
 * thousands.
 */
export class ImageUrls {
  private readonly urls = new Map<string, string>();

  get size(): number {
    return this.urls.size;
  }

  /** Makes an object URL for `bytes` of media type `type` under `key`; returns it. */
  set(key: string, bytes: Uint8Array, type: string): string {
    // A copy into a fresh ArrayBuffer: the message's bytes may be a view on a larger buffer.
    const url = URL.createObjectURL(new Blob([bytes.slice()], { type }));
    this.revoke(key);
    this.urls.set(key, url);
    return url;
  }

  get(key: string): string | undefined {
    return this.urls.get(key);
  }

  revoke(key: string): void {
    const url = this.urls.get(key);
    if (url !== undefined) URL.revokeObjectURL(url);
    this.urls.delete(key);
  }

  clear(): void {
    for (const url of this.urls.values()) URL.revokeObjectURL(url);
    this.urls.clear();
  }
}

/**
 * The rows a virtualised list draws: only those in the viewport, plus `overscan` on each side,
 * so a list of thousands costs what a screenful does.
 */
export interface Window {
  /** First row drawn. */
  start: number;
  /** One past the last row drawn. */
  end: number;
  /** Pixels above the first row drawn (the rows not drawn). */
  offset: number;
  /** Height of every row together: the scroll area's. */
  total: number;
}

export function visibleRows(
  scrollTop: number,
  viewportHeight: number,
  rowHeight: number,
  count: number,
  overscan = 5,
): Window {
  const total = count * rowHeight;
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const start = Math.max(0, Math.min(count, first - overscan));
  const end = Math.min(count, first + Math.ceil(viewportHeight / rowHeight) + overscan);
  return { start, end: Math.max(start, end), offset: start * rowHeight, total };
}

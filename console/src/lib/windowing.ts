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
  // A list that just got shorter (a search) may still report the old, larger scroll offset.
  const top = Math.max(0, Math.min(scrollTop, total - viewportHeight));
  const first = Math.floor(top / rowHeight);
  const start = Math.max(0, Math.min(count, first - overscan));
  const end = Math.min(count, first + Math.ceil(viewportHeight / rowHeight) + overscan);
  return { start, end: Math.max(start, end), offset: start * rowHeight, total };
}

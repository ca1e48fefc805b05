import type { Timeline } from '../lib/flamebearer';

/**
 * Align several timelines on one x axis (the union of their timestamps). A series has no
 * value (null, drawn by spanning the gap) where another series' grid has a point and its own
 * has none: a point between two of its steps is not a step without data, and a 0 there
 * would draw a dip that is not in the data.
 */
export function alignTimelines(series: Timeline[]): [number[], ...(number | null)[][]] {
  const xs = new Set<number>();
  for (const t of series) t.samples.forEach((_, i) => xs.add(t.startTime + i * t.durationDelta));
  const x = [...xs].sort((a, b) => a - b);
  const idx = new Map(x.map((v, i) => [v, i]));
  const ys = series.map((t) => {
    const y = new Array<number | null>(x.length).fill(null);
    t.samples.forEach((v, i) => { y[idx.get(t.startTime + i * t.durationDelta)!] = v; });
    return y;
  });
  return [x, ...ys];
}

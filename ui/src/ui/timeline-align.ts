import type { Timeline } from '../lib/flamebearer';

/** Align several timelines on one x axis (union of timestamps, missing points = 0). */
export function alignTimelines(series: Timeline[]): [number[], ...number[][]] {
  const xs = new Set<number>();
  for (const t of series) t.samples.forEach((_, i) => xs.add(t.startTime + i * t.durationDelta));
  const x = [...xs].sort((a, b) => a - b);
  const idx = new Map(x.map((v, i) => [v, i]));
  const ys = series.map((t) => {
    const y = new Array<number>(x.length).fill(0);
    t.samples.forEach((v, i) => { y[idx.get(t.startTime + i * t.durationDelta)!] = v; });
    return y;
  });
  return [x, ...ys];
}

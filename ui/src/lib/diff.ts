// Diff flame graph: coloring by change and normalization.
import type { FlameData, FlameNode } from './flamebearer';

export type DiffMode = 'normalized' | 'absolute';

/**
 * Percent change of a node from left to right.
 * normalized: compares each side's share of its own total (lt/L vs rt/R);
 * absolute: compares raw values (lt vs rt).
 * Returns +Infinity for a node only present on the right, -100 for one only on the left.
 */
export function diffPercent(n: Pick<FlameNode, 'lt' | 'rt'>, leftTicks: number, rightTicks: number, mode: DiffMode): number {
  let l = n.lt;
  let r = n.rt;
  if (mode === 'normalized') {
    l = leftTicks > 0 ? n.lt / leftTicks : 0;
    r = rightTicks > 0 ? n.rt / rightTicks : 0;
  }
  if (l === 0 && r === 0) return 0;
  if (l === 0) return Infinity;
  return ((r - l) / l) * 100;
}

export type DiffClass = 'grew' | 'shrank' | 'same';

/** Changes within ±threshold percent count as unchanged. */
export function diffClass(p: number, threshold = 1): DiffClass {
  if (p > threshold) return 'grew';
  if (p < -threshold) return 'shrank';
  return 'same';
}

const NEUTRAL = [200, 200, 205];
const RED = [220, 38, 38];
const GREEN = [22, 163, 74];

/** Color for a percent change: gray when unchanged, towards red when grown, green when shrunk. */
export function diffColor(p: number): string {
  const t = Math.max(-1, Math.min(1, p / 100));
  const cls = diffClass(p);
  if (cls === 'same') return rgb(NEUTRAL);
  // Keep a visible minimum intensity so small but real changes are still tinted.
  const a = 0.3 + 0.7 * Math.abs(t);
  const target = t > 0 ? RED : GREEN;
  return rgb(NEUTRAL.map((c, i) => Math.round(c + (target[i] - c) * a)));
}

function rgb(c: number[]): string {
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/**
 * Layout for a diff flame graph. absolute: width = left + right values (as decoded).
 * normalized: width = (left share + right share) scaled to numTicks, so both sides weigh the same.
 */
export function layoutDiff(data: FlameData, mode: DiffMode): FlameData {
  if (data.format !== 'double' || mode === 'absolute') return data;
  const L = data.leftTicks;
  const R = data.rightTicks;
  const S = (L + R) / 2;
  const fl = L > 0 ? S / L : 0;
  const fr = R > 0 ? S / R : 0;
  const levels = data.levels.map((lvl) =>
    lvl.map((n) => ({ ...n, x: n.lx * fl + n.rx * fr, total: n.lt * fl + n.rt * fr, self: n.ls * fl + n.rs * fr })),
  );
  return { ...data, levels, numTicks: L * fl + R * fr };
}

// What a profile's values mean, and how to print them (summaries, timeline axes, tooltips).
//
// Pyroscope's convention (and Kiln's): `units: "samples"` with `sampleRate` = ticks per second.
// For cpu:nanoseconds the values are nanoseconds and `sampleRate` is 1e9; for plain sample counts
// (cpu:samples:count) each value is one sample and `sampleRate` is the sampling frequency
// (100, 97, ...). Either way seconds = value / sampleRate; only counts are "samples".
import { formatBytes, formatSeconds } from './flamebearer';

export type ValueKind = 'cpu' | 'time' | 'bytes' | 'count';

export interface ValueUnit {
  kind: ValueKind;
  /** cpu / time: ticks per second (seconds = value / perSecond). */
  perSecond: number;
  /** cpu / time: the values count samples (worth 1 / perSecond s each) rather than durations. */
  sampleCount: boolean;
  /** count: what is counted ("objects", "goroutines", ...). */
  noun: string;
}

const TIME_UNITS: Record<string, number> = { nanoseconds: 1e9, microseconds: 1e6, milliseconds: 1e3, seconds: 1 };
const NON_CPU_TIME = /wall|delay|block|mutex|lock|contention|off_cpu|offcpu/;

/**
 * The unit of a profile's values from the render metadata and (when known) the profile type id
 * `name:sample_type:sample_unit:period_type:period_unit`.
 */
export function valueUnit(meta: { units?: string; sampleRate?: number }, profileType = ''): ValueUnit {
  const parts = profileType.split(':');
  const [name = '', sampleType = '', sampleUnit = ''] = parts;
  const units = meta.units ?? 'samples';
  const rate = meta.sampleRate && meta.sampleRate > 0 ? meta.sampleRate : 100;
  const base = { perSecond: rate, sampleCount: false, noun: '' };
  if (units === 'bytes') return { ...base, kind: 'bytes' };
  if (units === 'nanoseconds') return { ...base, kind: 'cpu', perSecond: 1e9 };
  if (units !== 'samples' && units !== '') {
    const noun = units === 'lock_samples' ? 'lock samples' : units;
    return { ...base, kind: 'count', noun };
  }
  let sampleCount: boolean;
  if (sampleUnit in TIME_UNITS) sampleCount = false;
  else if (sampleUnit === 'count') sampleCount = true;
  // No type: a rate of a million per second or more is a time unit, not a sampling frequency.
  else sampleCount = rate < 1e6;
  const kind: ValueKind = NON_CPU_TIME.test(`${name}:${sampleType}`) ? 'time' : 'cpu';
  return { ...base, kind, sampleCount };
}

/** A number with about `sig` significant digits, thousands grouped, no trailing zeros. */
export function fmtNum(v: number, sig = 3): string {
  if (!Number.isFinite(v)) return '–';
  if (v === 0) return '0';
  const a = Math.abs(v);
  const decimals = a >= 10 ** sig ? 0 : Math.min(6, sig - 1 - Math.floor(Math.log10(a)));
  return v.toLocaleString('en-US', { maximumFractionDigits: Math.max(0, decimals) });
}

/** Plain-language total, e.g. ["34.3 CPU-seconds"] or ["3,431 samples", "34.3 CPU-seconds"]. */
export function summaryParts(v: number, u: ValueUnit): string[] {
  switch (u.kind) {
    case 'bytes':
      return [formatBytes(v)];
    case 'count':
      return [`${Math.round(v).toLocaleString('en-US')} ${u.noun}`];
    default: {
      const secs = `${fmtNum(v / u.perSecond)} ${u.kind === 'cpu' ? 'CPU-seconds' : 'seconds'}`;
      return u.sampleCount ? [`${Math.round(v).toLocaleString('en-US')} samples`, secs] : [secs];
    }
  }
}

/** A short amount for table cells: "20.07 s", "1.2 GB", "12.3 K objects". */
export function formatAmount(v: number, u: ValueUnit): string {
  if (u.kind === 'bytes') return formatBytes(v);
  if (u.kind === 'count') return fmtNum(v);
  return formatSeconds(v / u.perSecond);
}

/** Timelines plot cpu / time as a rate (CPU cores = CPU-seconds per second), others as is. */
export function timelineFactor(u: ValueUnit, stepSecs: number): number {
  if (u.kind === 'cpu' || u.kind === 'time') return 1 / (u.perSecond * (stepSecs > 0 ? stepSecs : 1));
  return 1;
}

/** Caption of a timeline's y axis. */
export function axisCaption(u: ValueUnit): string {
  switch (u.kind) {
    case 'cpu': return 'CPU cores';
    case 'time': return 'seconds per second';
    case 'bytes': return 'bytes per step';
    default: return `${u.noun} per step`;
  }
}

/** A plotted (already scaled) value with its unit: "0.35 cores", "1.5 MB", "12 objects". */
export function formatRate(v: number, u: ValueUnit): string {
  switch (u.kind) {
    case 'cpu': return `${fmtNum(v)} ${v === 1 ? 'core' : 'cores'}`;
    case 'time': return `${fmtNum(v)} s/s`;
    case 'bytes': return formatBytes(v);
    default: return `${fmtNum(v)} ${u.noun}`;
  }
}

/** Decimals needed to print ticks `incr` apart (0.05 → 2, 2 → 0). */
export function tickDecimals(incr: number): number {
  if (!(incr > 0) || incr >= 1) return 0;
  return Math.min(6, Math.ceil(-Math.log10(incr) - 1e-9));
}

/** Labels of y axis ticks (plotted values), `incr` apart. */
export function axisTicks(splits: number[], u: ValueUnit, incr: number): string[] {
  if (u.kind === 'bytes') return splits.map((v) => (v === 0 ? '0' : compactBytes(v)));
  if (u.kind === 'count') return splits.map((v) => compactCount(v));
  const d = tickDecimals(incr);
  return splits.map((v) => v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
}

function compactBytes(b: number): string {
  const s = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < s.length - 1) { b /= 1024; i++; }
  return `${fmtNum(b)} ${s[i]}`;
}

function compactCount(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e9) return `${fmtNum(n / 1e9)}G`;
  if (a >= 1e6) return `${fmtNum(n / 1e6)}M`;
  if (a >= 1e4) return `${fmtNum(n / 1e3)}K`;
  return fmtNum(n);
}

/**
 * Width (px) of a y axis whose tick labels are `labels`: the widest label plus the tick marks
 * and gap uPlot draws (defaults 10 + 5), plus a small margin; at least `min`.
 */
export function axisWidth(labels: (string | null | undefined)[], measure: (s: string) => number, tickSize = 10, gap = 5, min = 32): number {
  let w = 0;
  for (const l of labels) if (l) w = Math.max(w, measure(l));
  return Math.max(min, Math.ceil(w + tickSize + gap + 4));
}

/** The text of a timeline point's tooltip: one line per series, raw (unscaled) values. */
export function pointLines(rows: { label: string; raw: number }[], u: ValueUnit, stepSecs: number): string[] {
  const f = timelineFactor(u, stepSecs);
  return rows.map(({ label, raw }) => {
    let s = `${label}: ${formatRate(raw * f, u)}`;
    if (u.kind === 'cpu' || u.kind === 'time') {
      s += ` (${fmtNum(raw / u.perSecond)} ${u.kind === 'cpu' ? 'CPU-s' : 's'} in ${stepSecs} s`;
      if (u.sampleCount) s += `, ${Math.round(raw).toLocaleString('en-US')} samples`;
      s += ')';
    }
    return s;
  });
}

/**
 * Render metadata (`units`, `sampleRate`) the server sends for a profile type id, for responses
 * without metadata (group totals). `exact` is false when the rate depends on the sampling period
 * (sample counts), which only a render response tells.
 */
export function metaForType(profileType: string): { units: string; sampleRate: number; exact: boolean } {
  const [, ty = '', unit = ''] = profileType.split(':');
  if (unit in TIME_UNITS) return { units: 'samples', sampleRate: TIME_UNITS[unit], exact: true };
  if (unit === 'bytes') return { units: 'bytes', sampleRate: 100, exact: true };
  if (unit === 'count') {
    if (/object|alloc|inuse/.test(ty)) return { units: 'objects', sampleRate: 100, exact: true };
    if (ty.includes('goroutine')) return { units: 'goroutines', sampleRate: 100, exact: true };
    if (/lock|contention/.test(ty)) return { units: 'lock_samples', sampleRate: 100, exact: true };
  }
  return { units: 'samples', sampleRate: 100, exact: false };
}

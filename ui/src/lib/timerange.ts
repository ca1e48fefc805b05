// Time range parsing: unix seconds, `now`, `now-15m`, `now-1h`, `now-7d`...

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

export class TimeError extends Error {}

/** Resolve a time expression to unix seconds. Millisecond timestamps are accepted too. */
export function parseTime(expr: string, nowSec: number = Math.floor(Date.now() / 1000)): number {
  const s = expr.trim();
  if (s === 'now' || s === '') return nowSec;
  const rel = /^now\s*-\s*(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(s);
  if (rel) return Math.round(nowSec - parseFloat(rel[1]) * UNIT[rel[2]]);
  if (/^\d+(\.\d+)?$/.test(s)) {
    const n = parseFloat(s);
    return Math.floor(n > 1e11 ? n / 1000 : n);
  }
  throw new TimeError(`bad time "${expr}" (use unix seconds, now, or now-<n><s|m|h|d|w>)`);
}

export function isValidTime(expr: string): boolean {
  try { parseTime(expr, 0); return true; } catch { return false; }
}

export interface Preset { label: string; from: string; until: string }

export const PRESETS: Preset[] = [
  { label: 'Last 5 minutes', from: 'now-5m', until: 'now' },
  { label: 'Last 15 minutes', from: 'now-15m', until: 'now' },
  { label: 'Last 1 hour', from: 'now-1h', until: 'now' },
  { label: 'Last 6 hours', from: 'now-6h', until: 'now' },
  { label: 'Last 24 hours', from: 'now-24h', until: 'now' },
  { label: 'Last 7 days', from: 'now-7d', until: 'now' },
];

/** Readable description of a range. */
export function describeRange(from: string, until: string, nowSec?: number): string {
  const p = PRESETS.find((x) => x.from === from && x.until === until);
  if (p) return p.label;
  const f = parseTime(from, nowSec);
  const u = parseTime(until, nowSec);
  return `${fmtDate(f)} → ${fmtDate(u)}`;
}

export function fmtDate(sec: number): string {
  const d = new Date(sec * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** For <input type=datetime-local>: local time `YYYY-MM-DDTHH:MM`. */
export function toLocalInput(sec: number): string {
  return fmtDate(sec).replace(' ', 'T').slice(0, 16);
}

export function fromLocalInput(v: string): number {
  return Math.floor(new Date(v).getTime() / 1000);
}

/** Shift an absolute range by `deltaSec` (e.g. one day earlier = -86400); returns unix-second strings. */
export function shiftRange(from: string, until: string, deltaSec: number, nowSec?: number): { from: string; until: string } {
  return { from: String(parseTime(from, nowSec) + deltaSec), until: String(parseTime(until, nowSec) + deltaSec) };
}

/** Split a range in two halves (absolute seconds). */
export function splitRange(from: string, until: string, nowSec?: number): [{ from: string; until: string }, { from: string; until: string }] {
  const f = parseTime(from, nowSec);
  const u = parseTime(until, nowSec);
  const m = Math.floor((f + u) / 2);
  return [{ from: String(f), until: String(m) }, { from: String(m), until: String(u) }];
}

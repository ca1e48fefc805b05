// Thin client for the kiln server API (same origin, all GET).
import type { DiffProfile, SingleProfile, Timeline } from './flamebearer';

export interface GroupTotals {
  groupBy: string;
  total: number;
  groups: { value: string; total: number; timeline: Timeline }[];
}

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

/** Build a same-origin URL relative to the page (works when the UI is served at `/`). */
export function apiUrl(path: string, params: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') p.set(k, String(v));
  return `${path}?${p.toString()}`;
}

async function getJSON<T>(url: string, signal?: AbortSignal): Promise<T> {
  const r = await fetch(url, { signal });
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      const t = await r.text();
      if (t) msg += `: ${t.slice(0, 300)}`;
    } catch { /* ignore */ }
    throw new ApiError(r.status, msg);
  }
  return (await r.json()) as T;
}

export const api = {
  profileTypes: (signal?: AbortSignal) => getJSON<string[]>('api/v1/profile-types', signal),
  labelNames: (query: string, from: string, until: string, signal?: AbortSignal) =>
    getJSON<string[]>(apiUrl('pyroscope/label-names', { query, from, until }), signal),
  labelValues: (label: string, query: string, from: string, until: string, signal?: AbortSignal) =>
    getJSON<string[]>(apiUrl('pyroscope/label-values', { label, query, from, until }), signal),
  render: (query: string, from: string, until: string, maxNodes = 1024, signal?: AbortSignal) =>
    getJSON<SingleProfile>(apiUrl('pyroscope/render', { query, from, until, format: 'json', maxNodes }), signal),
  renderDiff: (
    p: { leftQuery: string; leftFrom: string; leftUntil: string; rightQuery: string; rightFrom: string; rightUntil: string },
    maxNodes = 1024,
    signal?: AbortSignal,
  ) => getJSON<DiffProfile>(apiUrl('pyroscope/render-diff', { ...p, format: 'json', maxNodes }), signal),
  groupTotals: (query: string, from: string, until: string, groupBy: string, step?: number, signal?: AbortSignal) =>
    getJSON<GroupTotals>(apiUrl('api/v1/group-totals', { query, from, until, groupBy, step }), signal),
  exportUrl: (query: string, from: string, until: string, format: 'pprof' | 'folded') =>
    apiUrl('api/v1/export', { query, from, until, format }),
};

// All UI state lives in the URL query string (shareable, back button works).
import { parseQuery, printQuery, type Matcher } from './selector';
import type { DiffMode } from './diff';
import type { SortKey } from './analysis';

export type View = 'single' | 'explore' | 'compare' | 'diff';
export type Mode = 'flame' | 'table' | 'both' | 'sandwich';

export const DEFAULT_PROFILE_TYPE = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';

export interface AppState {
  view: View;
  profileType: string;
  service: string;
  /** Matchers other than service_name. */
  matchers: Matcher[];
  from: string;
  until: string;
  mode: Mode;
  /** Function shown in the sandwich view. */
  fn: string;
  search: string;
  /** Zoomed flame graph node: its stack, frames joined by ';'. */
  focus: string;
  sort: SortKey;
  desc: boolean;
  groupBy: string;
  /** Comparison / diff: each side's range and extra matchers (as selector text, '' = same as main). */
  leftFrom: string;
  leftUntil: string;
  rightFrom: string;
  rightUntil: string;
  leftSelector: string;
  rightSelector: string;
  diffMode: DiffMode;
}

export const DEFAULTS: AppState = {
  view: 'single',
  profileType: DEFAULT_PROFILE_TYPE,
  service: '',
  matchers: [],
  from: 'now-1h',
  until: 'now',
  mode: 'both',
  fn: '',
  search: '',
  focus: '',
  sort: 'self',
  desc: true,
  groupBy: '',
  leftFrom: '',
  leftUntil: '',
  rightFrom: '',
  rightUntil: '',
  leftSelector: '',
  rightSelector: '',
  diffMode: 'normalized',
};

const VIEWS: View[] = ['single', 'explore', 'compare', 'diff'];
const MODES: Mode[] = ['flame', 'table', 'both', 'sandwich'];
const SORTS: SortKey[] = ['name', 'self', 'total'];

/** The full query, e.g. `process_cpu:...{service_name="rideshare",region="us-west-1"}`. */
export function stateQuery(s: Pick<AppState, 'profileType' | 'service' | 'matchers'>, extra: Matcher[] = []): string {
  const ms: Matcher[] = [];
  if (s.service) ms.push({ name: 'service_name', op: '=', value: s.service });
  const seen = new Set(extra.map((m) => m.name + m.op));
  for (const m of s.matchers) if (m.name !== 'service_name' && !seen.has(m.name + m.op)) ms.push(m);
  for (const m of extra) if (m.name !== 'service_name') ms.push(m);
  return printQuery({ profileType: s.profileType, matchers: ms });
}

export function parseState(search: string): AppState {
  const p = new URLSearchParams(search);
  const s: AppState = { ...DEFAULTS, matchers: [] };
  const q = p.get('query');
  if (q) {
    try {
      const parsed = parseQuery(q);
      if (parsed.profileType) s.profileType = parsed.profileType;
      for (const m of parsed.matchers) {
        if (m.name === 'service_name' && m.op === '=') s.service = m.value;
        else s.matchers.push(m);
      }
    } catch {
      /* keep defaults on a malformed link */
    }
  }
  const str = (k: keyof AppState & string) => {
    const v = p.get(k);
    if (v !== null) (s as unknown as Record<string, unknown>)[k] = v;
  };
  (['from', 'until', 'fn', 'search', 'focus', 'groupBy', 'leftFrom', 'leftUntil', 'rightFrom', 'rightUntil', 'leftSelector', 'rightSelector'] as const).forEach(str);
  const view = p.get('view') as View | null;
  if (view && VIEWS.includes(view)) s.view = view;
  const mode = p.get('mode') as Mode | null;
  if (mode && MODES.includes(mode)) s.mode = mode;
  const sort = p.get('sort') as SortKey | null;
  if (sort && SORTS.includes(sort)) s.sort = sort;
  if (p.get('asc') === '1') s.desc = false;
  if (p.get('diffMode') === 'absolute') s.diffMode = 'absolute';
  return s;
}

/** Serialize; default values are left out to keep links short (`query`, `from`, `until` always present). */
export function serializeState(s: AppState): string {
  const p = new URLSearchParams();
  if (s.view !== DEFAULTS.view) p.set('view', s.view);
  p.set('query', stateQuery(s));
  p.set('from', s.from);
  p.set('until', s.until);
  const opt = (k: keyof AppState & string) => {
    const v = s[k];
    if (v !== DEFAULTS[k] && typeof v === 'string') p.set(k, v);
  };
  opt('mode');
  (['fn', 'search', 'focus', 'sort', 'groupBy', 'leftFrom', 'leftUntil', 'rightFrom', 'rightUntil', 'leftSelector', 'rightSelector', 'diffMode'] as const).forEach(opt);
  if (!s.desc) p.set('asc', '1');
  return '?' + p.toString();
}

// App state = URL query string. navigate() pushes history entries; popstate restores them.
import { parseState, serializeState, type AppState } from '../lib/urlstate';
import { debug } from './debug';

let state: AppState = parseState(location.search);
const subs: ((s: AppState, prev: AppState) => void)[] = [];

export function getState(): AppState {
  return state;
}

export function subscribe(fn: (s: AppState, prev: AppState) => void): void {
  subs.push(fn);
}

function emit(prev: AppState): void {
  debug.state = state;
  for (const f of subs) f(state, prev);
}

/** Update state; `replace` for high-frequency changes (typing in a search box). */
export function navigate(patch: Partial<AppState>, opts: { replace?: boolean } = {}): void {
  const prev = state;
  state = { ...state, ...patch };
  const qs = serializeState(state);
  if (qs !== location.search) {
    if (opts.replace) history.replaceState(null, '', qs);
    else history.pushState(null, '', qs);
  }
  emit(prev);
}

window.addEventListener('popstate', () => {
  const prev = state;
  state = parseState(location.search);
  emit(prev);
});

/** Normalize the URL once on load (so a bare `/` becomes a full shareable link). */
export function initUrl(): void {
  history.replaceState(null, '', serializeState(state));
  debug.state = state;
}

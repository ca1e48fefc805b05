// Flame graph palette for single profiles: stable color per package (or per function when there is none).

const PALETTE = [
  '#f4a261', '#e9c46a', '#f6bd60', '#f28482', '#f5cac3', '#e76f51', '#ffb703', '#fb8500',
  '#ee9b00', '#ca6702', '#f4845f', '#f7b267', '#f79d65', '#e5989b', '#ffcb77', '#fe6d73',
  '#ffb4a2', '#e07a5f', '#f2cc8f', '#dda15e',
];

/** Package part of a function name: `github.com/x/y.(*T).M` → `github.com/x/y`, `std::vec::push` → `std::vec`. */
export function packageOf(name: string): string {
  const rs = name.lastIndexOf('::');
  if (rs > 0) return name.slice(0, rs);
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot > 0) return name.slice(0, dot);
  return name;
}

export function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

export function nameColor(name: string): string {
  return PALETTE[hashString(packageOf(name)) % PALETTE.length];
}

export const FADED = '#e5e7eb';
export const SEARCH_MATCH = '#c026d3';

/** Distinct series colors (tag explorer, timelines). */
export const SERIES = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c'];

// Flamebearer (Pyroscope's wire format) types, decoding to absolute positions and to a tree,
// and encoding a tree back into flamebearer levels.

export interface Flamebearer {
  names: string[];
  levels: number[][];
  numTicks: number;
  maxSelf: number;
}

export interface Timeline {
  startTime: number;
  samples: number[];
  durationDelta: number;
}

export interface Metadata {
  format: 'single' | 'double';
  units?: string;
  sampleRate?: number;
  spyName?: string;
  name?: string;
}

export interface SingleProfile {
  flamebearer: Flamebearer;
  metadata: Metadata;
  timeline?: Timeline | null;
}

export interface DiffProfile {
  flamebearer: Flamebearer;
  metadata: Metadata;
  leftTicks: number;
  rightTicks: number;
  timeline?: Timeline | null;
}

/** One node of a flame graph, absolute coordinates. For single profiles the l and r fields are unused (0). */
export interface FlameNode {
  level: number;
  /** Absolute start offset (ticks) and width (ticks) of the node. For diffs: left + right. */
  x: number;
  total: number;
  self: number;
  name: number;
  /** Diff only: left / right absolute offsets, totals and selfs. */
  lx: number;
  lt: number;
  ls: number;
  rx: number;
  rt: number;
  rs: number;
}

export interface FlameData {
  format: 'single' | 'double';
  names: string[];
  levels: FlameNode[][];
  numTicks: number;
  leftTicks: number;
  rightTicks: number;
  units: string;
  sampleRate: number;
}

/** Decode the delta-encoded single format (4 ints per node) into absolute nodes. */
export function decodeSingle(fb: Flamebearer, meta?: Partial<Metadata>): FlameData {
  const levels: FlameNode[][] = [];
  for (let d = 0; d < fb.levels.length; d++) {
    const row = fb.levels[d];
    const out: FlameNode[] = [];
    let prevEnd = 0;
    for (let i = 0; i + 3 < row.length; i += 4) {
      const x = prevEnd + row[i];
      const total = row[i + 1];
      out.push({ level: d, x, total, self: row[i + 2], name: row[i + 3], lx: 0, lt: 0, ls: 0, rx: 0, rt: 0, rs: 0 });
      prevEnd = x + total;
    }
    levels.push(out);
  }
  return {
    format: 'single',
    names: fb.names,
    levels,
    numTicks: fb.numTicks,
    leftTicks: 0,
    rightTicks: 0,
    units: meta?.units ?? 'samples',
    sampleRate: meta?.sampleRate ?? 100,
  };
}

/** Decode the double (diff) format (7 ints per node, each side delta-encoded on its own). */
export function decodeDouble(p: DiffProfile): FlameData {
  const fb = p.flamebearer;
  const levels: FlameNode[][] = [];
  for (let d = 0; d < fb.levels.length; d++) {
    const row = fb.levels[d];
    const out: FlameNode[] = [];
    let lEnd = 0;
    let rEnd = 0;
    for (let i = 0; i + 6 < row.length; i += 7) {
      const lx = lEnd + row[i];
      const lt = row[i + 1];
      const ls = row[i + 2];
      const rx = rEnd + row[i + 3];
      const rt = row[i + 4];
      const rs = row[i + 5];
      out.push({ level: d, x: lx + rx, total: lt + rt, self: ls + rs, name: row[i + 6], lx, lt, ls, rx, rt, rs });
      lEnd = lx + lt;
      rEnd = rx + rt;
    }
    levels.push(out);
  }
  return {
    format: 'double',
    names: fb.names,
    levels,
    numTicks: fb.numTicks,
    leftTicks: p.leftTicks,
    rightTicks: p.rightTicks,
    units: p.metadata?.units ?? 'samples',
    sampleRate: p.metadata?.sampleRate ?? 100,
  };
}

/** A call tree node. For diffs, left/right totals are kept too. */
export interface TreeNode {
  name: string;
  total: number;
  self: number;
  children: TreeNode[];
  lt?: number;
  ls?: number;
  rt?: number;
  rs?: number;
}

/** Build a call tree from decoded levels (parent = node on previous level whose span contains x). */
export function toTree(data: FlameData): TreeNode {
  const root0 = data.levels[0]?.[0];
  const mk = (n: FlameNode): TreeNode => {
    const t: TreeNode = { name: data.names[n.name] ?? '?', total: n.total, self: n.self, children: [] };
    if (data.format === 'double') {
      t.lt = n.lt; t.ls = n.ls; t.rt = n.rt; t.rs = n.rs;
    }
    return t;
  };
  if (!root0) return { name: 'total', total: 0, self: 0, children: [] };
  let prevNodes = [root0];
  let prevTree = [mk(root0)];
  const root = prevTree[0];
  for (let d = 1; d < data.levels.length; d++) {
    const nodes = data.levels[d];
    const trees: TreeNode[] = [];
    let p = 0;
    for (const n of nodes) {
      // Both levels are sorted by x: advance the parent pointer monotonically.
      while (p < prevNodes.length && prevNodes[p].x + prevNodes[p].total <= n.x) p++;
      const t = mk(n);
      trees.push(t);
      if (p < prevNodes.length) prevTree[p].children.push(t);
    }
    prevNodes = nodes;
    prevTree = trees;
  }
  return root;
}

/** Encode a tree into single-format flamebearer levels (children ordered as given). */
export function encodeSingle(root: TreeNode): Flamebearer {
  const names: string[] = [];
  const nameIdx = new Map<string, number>();
  const idx = (s: string) => {
    let i = nameIdx.get(s);
    if (i === undefined) { i = names.length; names.push(s); nameIdx.set(s, i); }
    return i;
  };
  const levels: number[][] = [];
  const prevEnd: number[] = [];
  let maxSelf = 0;
  const walk = (n: TreeNode, depth: number, x: number) => {
    if (!levels[depth]) { levels[depth] = []; prevEnd[depth] = 0; }
    levels[depth].push(x - prevEnd[depth], n.total, n.self, idx(n.name));
    prevEnd[depth] = x + n.total;
    if (n.self > maxSelf) maxSelf = n.self;
    let cx = x;
    for (const c of n.children) { walk(c, depth + 1, cx); cx += c.total; }
  };
  walk(root, 0, 0);
  return { names, levels, numTicks: root.total, maxSelf };
}

/** Folded ("collapsed") stacks of the data in hand: `a;b;c self` lines. */
export function toFolded(root: TreeNode): string {
  const lines: string[] = [];
  const stack: string[] = [];
  const walk = (n: TreeNode, isRoot: boolean) => {
    if (!isRoot) stack.push(n.name);
    if (!isRoot && n.self > 0) lines.push(`${stack.join(';')} ${n.self}`);
    for (const c of n.children) walk(c, false);
    if (!isRoot) stack.pop();
  };
  walk(root, true);
  return lines.join('\n') + (lines.length ? '\n' : '');
}

/** Count of nodes in the decoded data. */
export function nodeCount(data: FlameData): number {
  let n = 0;
  for (const l of data.levels) n += l.length;
  return n;
}

/** Human format a tick value as time for CPU profiles (samples / sampleRate seconds). */
export function formatValue(v: number, data: Pick<FlameData, 'units' | 'sampleRate'>): string {
  if (data.units === 'samples' || data.units === '' || data.units === 'nanoseconds') {
    const secs = data.units === 'nanoseconds' ? v / 1e9 : v / (data.sampleRate || 100);
    return formatSeconds(secs);
  }
  if (data.units === 'bytes') return formatBytes(v);
  return formatCount(v);
}

export function formatSeconds(s: number): string {
  if (s === 0) return '0 s';
  if (s < 0.001) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 0)} ms`;
  if (s < 60) return `${s.toFixed(2)} s`;
  if (s < 3600) return `${(s / 60).toFixed(2)} min`;
  return `${(s / 3600).toFixed(2)} h`;
}

export function formatBytes(b: number): string {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 2 : 0)} ${u[i]}`;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)} K`;
  return String(n);
}

export function pct(part: number, whole: number): string {
  if (!whole) return '0%';
  const p = (100 * part) / whole;
  return `${p >= 10 ? p.toFixed(1) : p.toFixed(2)}%`;
}

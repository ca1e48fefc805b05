// Top table and sandwich (callers / callees) computations over a call tree.
import type { TreeNode } from './flamebearer';

export interface TopRow {
  name: string;
  self: number;
  total: number;
  /** Diff only. */
  leftSelf?: number;
  leftTotal?: number;
  rightSelf?: number;
  rightTotal?: number;
}

/**
 * Per-function self and total. Total counts each stack once even for recursive functions
 * (a node whose ancestor has the same name does not add to that function's total).
 */
export function topTable(root: TreeNode): TopRow[] {
  const rows = new Map<string, TopRow>();
  const onStack = new Map<string, number>();
  const isDiff = root.lt !== undefined;
  const walk = (n: TreeNode) => {
    let r = rows.get(n.name);
    if (!r) {
      r = { name: n.name, self: 0, total: 0 };
      if (isDiff) { r.leftSelf = 0; r.leftTotal = 0; r.rightSelf = 0; r.rightTotal = 0; }
      rows.set(n.name, r);
    }
    r.self += n.self;
    if (isDiff) { r.leftSelf! += n.ls ?? 0; r.rightSelf! += n.rs ?? 0; }
    const depth = onStack.get(n.name) ?? 0;
    if (depth === 0) {
      r.total += n.total;
      if (isDiff) { r.leftTotal! += n.lt ?? 0; r.rightTotal! += n.rt ?? 0; }
    }
    onStack.set(n.name, depth + 1);
    for (const c of n.children) walk(c);
    onStack.set(n.name, depth);
  };
  for (const c of root.children) walk(c);
  return [...rows.values()];
}

export type SortKey = 'name' | 'self' | 'total';

export function sortRows(rows: TopRow[], key: SortKey, desc: boolean): TopRow[] {
  const out = rows.slice();
  out.sort((a, b) => {
    let c: number;
    if (key === 'name') c = a.name.localeCompare(b.name);
    else c = a[key] - b[key];
    if (c === 0) c = a.name.localeCompare(b.name);
    return desc ? -c : c;
  });
  return out;
}

export function filterRows(rows: TopRow[], search: string): TopRow[] {
  const q = search.trim().toLowerCase();
  if (!q) return rows;
  return rows.filter((r) => r.name.toLowerCase().includes(q));
}

function mergeInto(parent: TreeNode, child: TreeNode): TreeNode {
  let m = parent.children.find((c) => c.name === child.name);
  if (!m) {
    m = { name: child.name, total: 0, self: 0, children: [] };
    parent.children.push(m);
  }
  m.total += child.total;
  m.self += child.self;
  return m;
}

function mergeSubtree(parent: TreeNode, n: TreeNode): void {
  const m = mergeInto(parent, n);
  for (const c of n.children) mergeSubtree(m, c);
}

function sortTree(n: TreeNode): void {
  n.children.sort((a, b) => b.total - a.total || a.name.localeCompare(b.name));
  for (const c of n.children) sortTree(c);
}

/**
 * Callees of `fn`: a tree rooted at `fn` merging the subtrees of its outermost occurrences.
 * Callers of `fn`: an inverted tree rooted at `fn`, whose children are its callers
 * (weighted by the total of the outermost occurrence), their callers below them, etc.
 */
export function sandwich(root: TreeNode, fn: string): { callers: TreeNode; callees: TreeNode } {
  const callees: TreeNode = { name: fn, total: 0, self: 0, children: [] };
  const callers: TreeNode = { name: fn, total: 0, self: 0, children: [] };
  const path: TreeNode[] = [];
  const walk = (n: TreeNode, inside: boolean) => {
    const hit = n.name === fn && !inside;
    if (hit) {
      callees.total += n.total;
      callees.self += n.self;
      for (const c of n.children) mergeSubtree(callees, c);
      callers.total += n.total;
      callers.self += n.self;
      let cur = callers;
      for (let i = path.length - 1; i >= 0; i--) {
        cur = mergeInto(cur, { name: path[i].name, total: n.total, self: 0, children: [] });
      }
      // The innermost caller chain ends at the root; self of the last frame is the total.
      if (cur !== callers) cur.self += n.total;
    }
    // A recursive occurrence (inside === true) is already counted by the outer one.
    path.push(n);
    for (const c of n.children) walk(c, inside || hit);
    path.pop();
  };
  // The root "total" node is not a caller.
  for (const c of root.children) walk(c, false);
  sortTree(callees);
  sortTree(callers);
  return { callers, callees };
}

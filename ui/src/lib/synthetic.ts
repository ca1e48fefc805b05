// Deterministic synthetic profiles (for the render benchmark and tests).
import { encodeSingle, type Flamebearer, type TreeNode } from './flamebearer';

/** A random-looking call tree with exactly `nodes` nodes (root included), encoded as flamebearer. */
export function syntheticFlamebearer(nodes: number, seed = 1): Flamebearer {
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
  const root: TreeNode = { name: 'total', total: 0, self: 0, children: [] };
  const all: TreeNode[] = [root];
  const depth = new Map<TreeNode, number>([[root, 0]]);
  while (all.length < nodes) {
    // Prefer recent nodes so the tree gets deep (like real stacks), cap the depth at 60.
    const parent = all[Math.floor(all.length - 1 - Math.pow(rnd(), 0.35) * (all.length - 1))];
    const d = depth.get(parent)!;
    if (d >= 60) continue;
    const pkg = `pkg${Math.floor(rnd() * 40)}`;
    const c: TreeNode = { name: `github.com/acme/${pkg}.Function${all.length}`, total: 0, self: 0, children: [] };
    parent.children.push(c);
    depth.set(c, d + 1);
    all.push(c);
  }
  // Give each node some self time, then fill totals bottom-up.
  const fill = (n: TreeNode): number => {
    n.self = n.children.length ? Math.floor(rnd() * 20) : 1 + Math.floor(rnd() * 200);
    n.total = n.self;
    for (const c of n.children) n.total += fill(c);
    return n.total;
  };
  fill(root);
  return encodeSingle(root);
}

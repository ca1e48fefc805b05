import { describe, expect, it } from 'vitest';
import { decodeSingle, nodeCount, toTree } from '../src/lib/flamebearer';
import { syntheticFlamebearer } from '../src/lib/synthetic';

describe('syntheticFlamebearer', () => {
  it('has exactly the requested number of nodes and consistent totals', () => {
    const fb = syntheticFlamebearer(10_000, 7);
    const d = decodeSingle(fb);
    expect(nodeCount(d)).toBe(10_000);
    const check = (n: ReturnType<typeof toTree>): void => {
      expect(n.total).toBe(n.self + n.children.reduce((a, c) => a + c.total, 0));
      n.children.forEach(check);
    };
    check(toTree(d));
  });
});

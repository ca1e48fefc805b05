import { describe, expect, it } from 'vitest';
import { decodeSingle, nodeCount, toTree } from '../src/lib/flamebearer';
import { syntheticFlamebearer } from '../src/lib/synthetic';
import { alignTimelines } from '../src/ui/timeline-align';

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

describe('alignTimelines', () => {
  it('aligns series on the union of timestamps', () => {
    const [x, a, b] = alignTimelines([
      { startTime: 100, samples: [1, 2], durationDelta: 10 },
      { startTime: 110, samples: [5, 6], durationDelta: 10 },
    ]);
    expect(x).toEqual([100, 110, 120]);
    expect(a).toEqual([1, 2, 0]);
    expect(b).toEqual([0, 5, 6]);
  });
});

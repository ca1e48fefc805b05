import { describe, expect, it } from 'vitest';
import { decodeDouble, decodeSingle, encodeSingle, toFolded, toTree, type TreeNode } from '../src/lib/flamebearer';

// total(100) -> main(60, self 10) -> work(50, self 50)
//            -> idle(40, self 40)
const single = {
  names: ['total', 'main', 'idle', 'work'],
  levels: [
    [0, 100, 0, 0],
    [0, 60, 10, 1, 0, 40, 40, 2],
    [0, 50, 50, 3],
  ],
  numTicks: 100,
  maxSelf: 50,
};

describe('decodeSingle', () => {
  it('delta-decodes offsets within each level', () => {
    const d = decodeSingle(single, { units: 'samples', sampleRate: 100 });
    expect(d.levels[1].map((n) => [n.x, n.total])).toEqual([[0, 60], [60, 40]]);
    expect(d.levels[2][0].x).toBe(0);
  });
  it('handles gaps (non-zero deltas)', () => {
    const d = decodeSingle({ names: ['total', 'a', 'b'], levels: [[0, 10, 0, 0], [2, 3, 3, 1, 1, 4, 4, 2]], numTicks: 10, maxSelf: 4 });
    expect(d.levels[1].map((n) => n.x)).toEqual([2, 6]);
  });
});

describe('toTree / encodeSingle', () => {
  it('rebuilds parent/child relations', () => {
    const t = toTree(decodeSingle(single));
    expect(t.name).toBe('total');
    expect(t.children.map((c) => c.name)).toEqual(['main', 'idle']);
    expect(t.children[0].children.map((c) => [c.name, c.total])).toEqual([['work', 50]]);
    expect(t.children[1].children).toEqual([]);
  });
  it('round-trips through encodeSingle', () => {
    const t = toTree(decodeSingle(single));
    const fb = encodeSingle(t);
    expect(toTree(decodeSingle(fb))).toEqual(t);
    expect(fb.numTicks).toBe(100);
    expect(fb.maxSelf).toBe(50);
  });
  it('assigns children after a gap to the right parent', () => {
    const tree: TreeNode = {
      name: 'total', total: 10, self: 0, children: [
        { name: 'a', total: 4, self: 4, children: [] },
        { name: 'b', total: 6, self: 1, children: [{ name: 'c', total: 5, self: 5, children: [] }] },
      ],
    };
    expect(toTree(decodeSingle(encodeSingle(tree)))).toEqual(tree);
  });
});

describe('decodeDouble', () => {
  it('decodes both sides and builds a combined layout', () => {
    const d = decodeDouble({
      flamebearer: {
        names: ['total', 'a', 'b'],
        // total: L 10, R 20; a: L 10 R 5; b: L 0 R 15
        levels: [[0, 10, 0, 0, 20, 0, 0], [0, 10, 10, 0, 5, 5, 1, 0, 0, 0, 0, 15, 15, 2]],
        numTicks: 30,
        maxSelf: 15,
      },
      metadata: { format: 'double', units: 'samples', sampleRate: 100 },
      leftTicks: 10,
      rightTicks: 20,
    });
    const [a, b] = d.levels[1];
    expect([a.lx, a.lt, a.rx, a.rt, a.x, a.total]).toEqual([0, 10, 0, 5, 0, 15]);
    expect([b.lx, b.lt, b.rx, b.rt, b.x, b.total]).toEqual([10, 0, 5, 15, 15, 15]);
    const t = toTree(d);
    expect(t.children.map((c) => [c.name, c.lt, c.rt])).toEqual([['a', 10, 5], ['b', 0, 15]]);
  });
});

describe('toFolded', () => {
  it('prints one line per stack with self', () => {
    expect(toFolded(toTree(decodeSingle(single)))).toBe('main 10\nmain;work 50\nidle 40\n');
  });
});

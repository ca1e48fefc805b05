import { describe, expect, it } from 'vitest';
import { filterRows, sandwich, sortRows, topTable } from '../src/lib/analysis';
import type { TreeNode } from '../src/lib/flamebearer';

const n = (name: string, total: number, self: number, children: TreeNode[] = []): TreeNode => ({ name, total, self, children });

// main -> a -> lock ; main -> b -> lock ; main -> rec -> rec -> lock
const tree = n('total', 100, 0, [
  n('main', 100, 0, [
    n('a', 40, 10, [n('lock', 30, 30)]),
    n('b', 30, 10, [n('lock', 20, 20)]),
    n('rec', 30, 5, [n('rec', 25, 5, [n('lock', 20, 20)])]),
  ]),
]);

describe('topTable', () => {
  it('sums self and counts recursive totals once', () => {
    const rows = Object.fromEntries(topTable(tree).map((r) => [r.name, r]));
    expect(rows.lock).toMatchObject({ self: 70, total: 70 });
    expect(rows.rec).toMatchObject({ self: 10, total: 30 });
    expect(rows.main).toMatchObject({ self: 0, total: 100 });
    expect(rows.total).toBeUndefined();
  });
  it('sorts and filters', () => {
    const rows = topTable(tree);
    expect(sortRows(rows, 'self', true)[0].name).toBe('lock');
    expect(sortRows(rows, 'total', true)[0].name).toBe('main');
    expect(sortRows(rows, 'name', false).map((r) => r.name)).toEqual(['a', 'b', 'lock', 'main', 'rec']);
    expect(filterRows(rows, 'LO').map((r) => r.name)).toEqual(['lock']);
  });
});

describe('sandwich', () => {
  it('merges callees of all occurrences', () => {
    const { callees } = sandwich(tree, 'rec');
    expect(callees).toMatchObject({ name: 'rec', total: 30, self: 5 });
    expect(callees.children[0]).toMatchObject({ name: 'rec', total: 25 });
  });
  it('builds the inverted callers tree', () => {
    const { callers } = sandwich(tree, 'lock');
    expect(callers.total).toBe(70);
    expect(callers.children.map((c) => [c.name, c.total])).toEqual([['a', 30], ['b', 20], ['rec', 20]]);
    const rec = callers.children[2];
    expect(rec.children.map((c) => [c.name, c.total])).toEqual([['rec', 20]]);
    expect(rec.children[0].children[0]).toMatchObject({ name: 'main', total: 20, self: 20 });
  });
});

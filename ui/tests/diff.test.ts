import { describe, expect, it } from 'vitest';
import { diffClass, diffColor, diffPercent, layoutDiff } from '../src/lib/diff';
import { decodeDouble } from '../src/lib/flamebearer';

describe('diffPercent', () => {
  it('normalizes by each side total by default', () => {
    // left 10/100 = 10%, right 40/200 = 20% -> +100%
    expect(diffPercent({ lt: 10, rt: 40 }, 100, 200, 'normalized')).toBeCloseTo(100);
    // same share: unchanged though absolute doubled
    expect(diffPercent({ lt: 10, rt: 20 }, 100, 200, 'normalized')).toBeCloseTo(0);
    expect(diffPercent({ lt: 10, rt: 20 }, 100, 200, 'absolute')).toBeCloseTo(100);
  });
  it('handles nodes present on one side only', () => {
    expect(diffPercent({ lt: 0, rt: 5 }, 10, 10, 'normalized')).toBe(Infinity);
    expect(diffPercent({ lt: 5, rt: 0 }, 10, 10, 'normalized')).toBe(-100);
    expect(diffPercent({ lt: 0, rt: 0 }, 10, 10, 'absolute')).toBe(0);
  });
});

describe('diffColor / diffClass', () => {
  it('is red for growth, green for shrink and gray otherwise', () => {
    expect(diffClass(50)).toBe('grew');
    expect(diffClass(-50)).toBe('shrank');
    expect(diffClass(0.5)).toBe('same');
    const [r, g] = diffColor(100).match(/\d+/g)!.map(Number);
    expect(r).toBeGreaterThan(g);
    const [r2, g2] = diffColor(-100).match(/\d+/g)!.map(Number);
    expect(g2).toBeGreaterThan(r2);
    expect(diffColor(0)).toBe('rgb(200,200,205)');
    expect(diffColor(Infinity)).toBe(diffColor(100));
  });
});

describe('layoutDiff', () => {
  const d = decodeDouble({
    flamebearer: { names: ['total', 'a', 'b'], levels: [[0, 10, 0, 0, 30, 0, 0], [0, 10, 10, 0, 10, 10, 1, 0, 0, 0, 0, 20, 20, 2]], numTicks: 40, maxSelf: 20 },
    metadata: { format: 'double' },
    leftTicks: 10,
    rightTicks: 30,
  });
  it('keeps absolute layout as is', () => {
    expect(layoutDiff(d, 'absolute')).toBe(d);
  });
  it('weighs both sides equally when normalized', () => {
    const n = layoutDiff(d, 'normalized');
    // S = 20; a: 10*2 + 10*(2/3) = 26.67; b: 20*(2/3) = 13.33
    expect(n.numTicks).toBeCloseTo(40);
    expect(n.levels[1][0].total).toBeCloseTo(26.667, 2);
    expect(n.levels[1][1].x).toBeCloseTo(26.667, 2);
    expect(n.levels[1][1].total).toBeCloseTo(13.333, 2);
  });
});

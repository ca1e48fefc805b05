import { describe, expect, it } from 'vitest';
import { alignTimelines } from '../src/ui/timeline-align';

describe('alignTimelines', () => {
  it('keeps one series as it is', () => {
    expect(alignTimelines([{ startTime: 100, durationDelta: 10, samples: [3, 0, 5] }])).toEqual([[100, 110, 120], [3, 0, 5]]);
  });

  it('aligns series on the union of timestamps; outside its range a series has no value', () => {
    const [x, a, b] = alignTimelines([
      { startTime: 100, samples: [1, 2], durationDelta: 10 },
      { startTime: 110, samples: [5, 6], durationDelta: 10 },
    ]);
    expect(x).toEqual([100, 110, 120]);
    expect(a).toEqual([1, 2, null]);
    expect(b).toEqual([null, 5, 6]);
  });

  it('shares one grid between series of the same step', () => {
    const [x, a, b] = alignTimelines([
      { startTime: 100, durationDelta: 10, samples: [1, 2] },
      { startTime: 100, durationDelta: 10, samples: [3, 4] },
    ]);
    expect(x).toEqual([100, 110]);
    expect(a).toEqual([1, 2]);
    expect(b).toEqual([3, 4]);
  });

  it('invents no zeros where grids differ: a steady series stays steady', () => {
    // 10 s and 15 s steps over the same 30 s: the 15 s series has no point at 110 or 130.
    const [x, ten, fifteen] = alignTimelines([
      { startTime: 100, durationDelta: 10, samples: [10, 10, 10] },
      { startTime: 100, durationDelta: 15, samples: [15, 15] },
    ]);
    expect(x).toEqual([100, 110, 115, 120]);
    expect(ten).toEqual([10, 10, null, 10]);
    expect(fifteen).toEqual([15, null, 15, null]);
    expect([...ten, ...fifteen]).not.toContain(0);
  });

  it('keeps real zeros of the data', () => {
    const [, a, b] = alignTimelines([
      { startTime: 0, durationDelta: 10, samples: [0, 7] },
      { startTime: 10, durationDelta: 10, samples: [0] },
    ]);
    expect(a).toEqual([0, 7]);
    expect(b).toEqual([null, 0]);
  });
});

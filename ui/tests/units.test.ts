import { describe, expect, it } from 'vitest';
import {
  axisCaption, axisTicks, axisWidth, fmtNum, formatAmount, formatRate, metaForType, pointLines,
  summaryParts, tickDecimals, timelineFactor, valueUnit,
} from '../src/lib/units';

const NS_TYPE = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';
const COUNT_TYPE = 'process_cpu:samples:count:cpu:nanoseconds';
const ns = valueUnit({ units: 'samples', sampleRate: 1e9 }, NS_TYPE);
const hz100 = valueUnit({ units: 'samples', sampleRate: 100 }, COUNT_TYPE);
const hz97 = valueUnit({ units: 'samples', sampleRate: 97 });

describe('valueUnit', () => {
  it('cpu:nanoseconds (sampleRate 1e9) is CPU time, not a sample count', () => {
    expect(ns).toEqual({ kind: 'cpu', perSecond: 1e9, sampleCount: false, noun: '' });
    // Without the profile type, a rate of 1e9 still means nanoseconds.
    expect(valueUnit({ units: 'samples', sampleRate: 1e9 }).sampleCount).toBe(false);
  });
  it('plain sample counts keep their sampling rate', () => {
    expect(hz100).toMatchObject({ kind: 'cpu', perSecond: 100, sampleCount: true });
    expect(hz97).toMatchObject({ kind: 'cpu', perSecond: 97, sampleCount: true });
    // The type wins over the heuristic: milliseconds at rate 1000 are a duration.
    expect(valueUnit({ units: 'samples', sampleRate: 1000 }, 'x:cpu:milliseconds:cpu:milliseconds').sampleCount).toBe(false);
  });
  it('defaults, legacy nanoseconds, wall time, bytes and counts', () => {
    expect(valueUnit({})).toMatchObject({ kind: 'cpu', perSecond: 100, sampleCount: true });
    expect(valueUnit({ units: 'samples', sampleRate: 0 }).perSecond).toBe(100);
    expect(valueUnit({ units: 'nanoseconds' })).toMatchObject({ kind: 'cpu', perSecond: 1e9, sampleCount: false });
    expect(valueUnit({ units: 'samples', sampleRate: 1e9 }, 'wall:wall:nanoseconds:wall:nanoseconds').kind).toBe('time');
    expect(valueUnit({ units: 'bytes', sampleRate: 100 }).kind).toBe('bytes');
    expect(valueUnit({ units: 'objects' })).toMatchObject({ kind: 'count', noun: 'objects' });
    expect(valueUnit({ units: 'lock_samples' }).noun).toBe('lock samples');
  });
});

describe('metaForType', () => {
  it('matches the server for exact types and flags rate-dependent ones', () => {
    expect(metaForType(NS_TYPE)).toEqual({ units: 'samples', sampleRate: 1e9, exact: true });
    expect(metaForType('memory:inuse_space:bytes:space:bytes').units).toBe('bytes');
    expect(metaForType('memory:alloc_objects:count:space:bytes').units).toBe('objects');
    expect(metaForType(COUNT_TYPE)).toEqual({ units: 'samples', sampleRate: 100, exact: false });
  });
});

describe('summaries', () => {
  it('nanoseconds are CPU-seconds, never "samples"', () => {
    expect(summaryParts(34_313_130_970, ns)).toEqual(['34.3 CPU-seconds']);
    expect(summaryParts(4_060_606_020, ns)).toEqual(['4.06 CPU-seconds']);
    expect(summaryParts(350_000_000, ns)).toEqual(['0.35 CPU-seconds']);
    expect(summaryParts(12_345e9, ns)).toEqual(['12,345 CPU-seconds']);
  });
  it('sample counts show the count and seconds = count / sampleRate', () => {
    expect(summaryParts(3431, hz100)).toEqual(['3,431 samples', '34.3 CPU-seconds']);
    expect(summaryParts(970, hz97)).toEqual(['970 samples', '10 CPU-seconds']);
  });
  it('other units', () => {
    expect(summaryParts(1536, valueUnit({ units: 'bytes' }))).toEqual(['1.50 KB']);
    expect(summaryParts(12345, valueUnit({ units: 'objects' }))).toEqual(['12,345 objects']);
    expect(summaryParts(2e9, valueUnit({ units: 'samples', sampleRate: 1e9 }, 'wall:wall:nanoseconds:wall:nanoseconds'))).toEqual(['2 seconds']);
  });
  it('table amounts', () => {
    expect(formatAmount(20_070_706_870, ns)).toBe('20.07 s');
    expect(formatAmount(2007, hz100)).toBe('20.07 s');
    expect(formatAmount(12345, valueUnit({ units: 'objects' }))).toBe('12,345');
  });
  it('fmtNum keeps ~3 significant digits', () => {
    expect(fmtNum(0)).toBe('0');
    expect(fmtNum(0.0123456)).toBe('0.0123');
    expect(fmtNum(1.5)).toBe('1.5');
    expect(fmtNum(1824.6)).toBe('1,825');
    expect(fmtNum(NaN)).toBe('–');
  });
});

describe('timeline scale and labels', () => {
  it('plots CPU time as cores: value / sampleRate / step', () => {
    expect(3e9 * timelineFactor(ns, 10)).toBeCloseTo(0.3);
    expect(300 * timelineFactor(hz100, 10)).toBeCloseTo(0.3);
    expect(97 * timelineFactor(hz97, 1)).toBeCloseTo(1);
    expect(timelineFactor(valueUnit({ units: 'bytes' }), 10)).toBe(1);
    expect(1e9 * timelineFactor(ns, 0)).toBe(1); // a missing step counts as 1 s
  });
  it('captions and rates', () => {
    expect(axisCaption(ns)).toBe('CPU cores');
    expect(axisCaption(valueUnit({ units: 'objects' }))).toBe('objects per step');
    expect(formatRate(0.35, ns)).toBe('0.35 cores');
    expect(formatRate(1, ns)).toBe('1 core');
  });
  it('tick labels use the decimals of the tick increment', () => {
    expect(tickDecimals(1)).toBe(0);
    expect(tickDecimals(0.5)).toBe(1);
    expect(tickDecimals(0.1)).toBe(1);
    expect(tickDecimals(0.05)).toBe(2);
    expect(tickDecimals(0.001)).toBe(3);
    expect(axisTicks([0, 0.1, 0.2, 0.3], ns, 0.1)).toEqual(['0.0', '0.1', '0.2', '0.3']);
    expect(axisTicks([0, 1000, 2000], ns, 1000)).toEqual(['0', '1,000', '2,000']);
    expect(axisTicks([0, 1048576], valueUnit({ units: 'bytes' }), 1048576)).toEqual(['0', '1 MB']);
    expect(axisTicks([0, 50000, 2e6], valueUnit({ units: 'objects' }), 50000)).toEqual(['0', '50K', '2M']);
  });
  it('axis width fits the widest label plus ticks and gap', () => {
    const m = (s: string) => s.length * 7;
    expect(axisWidth(['0', '0.35'], m)).toBe(4 * 7 + 10 + 5 + 4);
    expect(axisWidth(['0', '1'], m)).toBe(32); // min
    expect(axisWidth(['0', '3,000,000,000'], m)).toBe(13 * 7 + 10 + 5 + 4);
    expect(axisWidth(['0.5', null, undefined, '12.5'], m, 6, 4, 0)).toBe(4 * 7 + 6 + 4 + 4);
    expect(axisWidth([], m)).toBe(32);
    // The labels that used to be clipped to "0,000" would need 110 px, not the old fixed 50.
    expect(axisWidth(['3,000,000,000'], m)).toBeGreaterThan(50);
  });
  it('tooltip lines show cores, CPU-seconds in the step, and samples only for counts', () => {
    expect(pointLines([{ label: 'rideshare', raw: 3.5e9 }], ns, 10)).toEqual(['rideshare: 0.35 cores (3.5 CPU-s in 10 s)']);
    expect(pointLines([{ label: 'a', raw: 350 }], hz100, 10)).toEqual(['a: 0.35 cores (3.5 CPU-s in 10 s, 350 samples)']);
    expect(pointLines([{ label: 'm', raw: 2048 }], valueUnit({ units: 'bytes' }), 10)).toEqual(['m: 2.00 KB']);
  });
});

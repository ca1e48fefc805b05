import { describe, expect, it } from 'vitest';
import { describeRange, isValidTime, parseTime, shiftRange, splitRange } from '../src/lib/timerange';

const NOW = 1_700_000_000;

describe('parseTime', () => {
  it('parses now and relative expressions', () => {
    expect(parseTime('now', NOW)).toBe(NOW);
    expect(parseTime('now-15m', NOW)).toBe(NOW - 900);
    expect(parseTime('now-1h', NOW)).toBe(NOW - 3600);
    expect(parseTime('now-7d', NOW)).toBe(NOW - 7 * 86400);
    expect(parseTime('now-30s', NOW)).toBe(NOW - 30);
  });
  it('parses unix seconds and milliseconds', () => {
    expect(parseTime('1699990000', NOW)).toBe(1699990000);
    expect(parseTime('1699990000123', NOW)).toBe(1699990000);
  });
  it('rejects garbage', () => {
    expect(() => parseTime('yesterday', NOW)).toThrow();
    expect(isValidTime('now-1x')).toBe(false);
    expect(isValidTime('now-2h')).toBe(true);
  });
});

describe('ranges', () => {
  it('describes presets', () => {
    expect(describeRange('now-1h', 'now', NOW)).toBe('Last 1 hour');
    expect(describeRange('1700000000', '1700000060', NOW)).toMatch(/→/);
  });
  it('shifts and splits', () => {
    expect(shiftRange('now-1h', 'now', -86400, NOW)).toEqual({ from: String(NOW - 3600 - 86400), until: String(NOW - 86400) });
    expect(splitRange('100', '200', NOW)).toEqual([{ from: '100', until: '150' }, { from: '150', until: '200' }]);
  });
});

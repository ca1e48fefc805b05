import { describe, expect, it } from 'vitest';
import { completionContext, parseQuery, parseSelector, printQuery, printSelector, SelectorError, setMatcher } from '../src/lib/selector';

describe('parseSelector', () => {
  it('parses all operators, with or without braces', () => {
    expect(parseSelector('{region="us-west-1", vehicle!="car"}')).toEqual([
      { name: 'region', op: '=', value: 'us-west-1' },
      { name: 'vehicle', op: '!=', value: 'car' },
    ]);
    expect(parseSelector('a=~"x.*",b!~"y"')).toEqual([
      { name: 'a', op: '=~', value: 'x.*' },
      { name: 'b', op: '!~', value: 'y' },
    ]);
    expect(parseSelector('{}')).toEqual([]);
    expect(parseSelector('  ')).toEqual([]);
  });
  it('handles escapes and trailing commas', () => {
    expect(parseSelector('{a="q\\"x\\\\", }')).toEqual([{ name: 'a', op: '=', value: 'q"x\\' }]);
  });
  it('rejects malformed input', () => {
    expect(() => parseSelector('{a="x"')).toThrow(SelectorError);
    expect(() => parseSelector('a x')).toThrow(SelectorError);
    expect(() => parseSelector('a="x')).toThrow(/unterminated/);
    expect(() => parseSelector('a=x')).toThrow(/quoted/);
    expect(() => parseSelector('a="x" b="y"')).toThrow(/","/);
  });
  it('round-trips through print', () => {
    const ms = parseSelector('{a="1", b!~"x\\"y"}');
    expect(parseSelector(printSelector(ms))).toEqual(ms);
  });
});

describe('queries', () => {
  it('parses and prints full queries', () => {
    const q = parseQuery('process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="rideshare",region="us-west-1"}');
    expect(q.profileType).toBe('process_cpu:cpu:nanoseconds:cpu:nanoseconds');
    expect(q.matchers).toHaveLength(2);
    expect(printQuery(q)).toBe('process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="rideshare",region="us-west-1"}');
    expect(parseQuery('x:y')).toEqual({ profileType: 'x:y', matchers: [] });
  });
  it('setMatcher replaces or removes', () => {
    const ms = setMatcher([{ name: 'a', op: '=', value: '1' }], 'a', '2');
    expect(ms).toEqual([{ name: 'a', op: '=', value: '2' }]);
    expect(setMatcher(ms, 'a', '')).toEqual([]);
  });
});

describe('completionContext', () => {
  it('detects label names and values being typed', () => {
    expect(completionContext('{reg', 4)).toEqual({ kind: 'name', prefix: 'reg' });
    expect(completionContext('{region="us-', 12)).toEqual({ kind: 'value', label: 'region', prefix: 'us-' });
    expect(completionContext('{region="x", ', 13)).toEqual({ kind: 'name', prefix: '' });
  });
});

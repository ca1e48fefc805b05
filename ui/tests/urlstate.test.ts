import { describe, expect, it } from 'vitest';
import { DEFAULTS, parseState, serializeState, stateQuery } from '../src/lib/urlstate';

describe('URL state', () => {
  it('defaults from an empty query string', () => {
    expect(parseState('')).toEqual(DEFAULTS);
  });
  it('round-trips every field', () => {
    const s = {
      ...DEFAULTS,
      view: 'diff' as const,
      service: 'rideshare',
      matchers: [{ name: 'region', op: '=' as const, value: 'us-west-1' }, { name: 'vehicle', op: '!=' as const, value: 'car' }],
      from: '1700000000',
      until: 'now',
      mode: 'sandwich' as const,
      fn: 'mutexLock',
      search: 'Order',
      focus: 'main;OrderCar',
      sort: 'total' as const,
      desc: false,
      groupBy: 'region',
      leftFrom: '1', leftUntil: '2', rightFrom: '3', rightUntil: '4',
      leftSelector: '{region="eu-north-1"}', rightSelector: '',
      diffMode: 'absolute' as const,
    };
    const qs = serializeState(s);
    expect(parseState(qs)).toEqual(s);
    expect(qs).toContain('query=process_cpu');
  });
  it('puts service_name first in the query', () => {
    expect(stateQuery({ profileType: 'p', service: 's', matchers: [{ name: 'region', op: '=', value: 'r' }] })).toBe('p{service_name="s",region="r"}');
    expect(stateQuery({ profileType: 'p', service: '', matchers: [] })).toBe('p{}');
  });
  it('lets extra matchers override the same label', () => {
    expect(stateQuery({ profileType: 'p', service: 's', matchers: [{ name: 'region', op: '=', value: 'a' }] }, [{ name: 'region', op: '=', value: 'b' }])).toBe('p{service_name="s",region="b"}');
  });
  it('survives malformed links', () => {
    expect(parseState('?query=%7Bbad&view=nope').view).toBe('single');
  });
});

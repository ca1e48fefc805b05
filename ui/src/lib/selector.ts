// Label selector parse / print: `{region="us-west-1", vehicle!="car"}` and full queries
// `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="rideshare"}`.

export type Op = '=' | '!=' | '=~' | '!~';
export interface Matcher {
  name: string;
  op: Op;
  value: string;
}

export interface Query {
  profileType: string;
  matchers: Matcher[];
}

export class SelectorError extends Error {}

const NAME_RE = /[a-zA-Z_][a-zA-Z0-9_.]*/y;

/** Parse a selector; braces are optional, an empty string gives no matchers. */
export function parseSelector(input: string): Matcher[] {
  let s = input.trim();
  if (s.startsWith('{')) {
    if (!s.endsWith('}')) throw new SelectorError('missing closing "}"');
    s = s.slice(1, -1);
  }
  const out: Matcher[] = [];
  let i = 0;
  const ws = () => { while (i < s.length && /\s/.test(s[i])) i++; };
  ws();
  while (i < s.length) {
    NAME_RE.lastIndex = i;
    const m = NAME_RE.exec(s);
    if (!m) throw new SelectorError(`expected a label name at position ${i + 1}`);
    const name = m[0];
    i += name.length;
    ws();
    let op: Op;
    if (s.startsWith('=~', i)) op = '=~';
    else if (s.startsWith('!~', i)) op = '!~';
    else if (s.startsWith('!=', i)) op = '!=';
    else if (s[i] === '=') op = '=';
    else throw new SelectorError(`expected =, !=, =~ or !~ after "${name}"`);
    i += op.length;
    ws();
    const q = s[i];
    if (q !== '"' && q !== "'" && q !== '`') throw new SelectorError(`expected a quoted value for "${name}"`);
    i++;
    let value = '';
    let closed = false;
    while (i < s.length) {
      const c = s[i];
      if (c === '\\' && q !== '`' && i + 1 < s.length) {
        const n = s[i + 1];
        value += n === 'n' ? '\n' : n === 't' ? '\t' : n;
        i += 2;
        continue;
      }
      if (c === q) { closed = true; i++; break; }
      value += c;
      i++;
    }
    if (!closed) throw new SelectorError(`unterminated value for "${name}"`);
    out.push({ name, op, value });
    ws();
    if (i < s.length) {
      if (s[i] !== ',') throw new SelectorError(`expected "," at position ${i + 1}`);
      i++;
      ws();
    }
  }
  return out;
}

function quote(v: string): string {
  return '"' + v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') + '"';
}

export function printMatchers(ms: Matcher[]): string {
  return ms.map((m) => `${m.name}${m.op}${quote(m.value)}`).join(', ');
}

export function printSelector(ms: Matcher[]): string {
  return `{${printMatchers(ms)}}`;
}

/** Parse `<profile type>{<selector>}`. */
export function parseQuery(q: string): Query {
  const s = q.trim();
  const b = s.indexOf('{');
  if (b < 0) return { profileType: s, matchers: [] };
  return { profileType: s.slice(0, b).trim(), matchers: parseSelector(s.slice(b)) };
}

export function printQuery(q: Query): string {
  // The server expects no spaces after commas to be harmless; keep the compact Pyroscope style.
  return `${q.profileType}{${q.matchers.map((m) => `${m.name}${m.op}${quote(m.value)}`).join(',')}}`;
}

/** Replace (or add) the equality matcher for `name`; an empty value removes it. */
export function setMatcher(ms: Matcher[], name: string, value: string, op: Op = '='): Matcher[] {
  const rest = ms.filter((m) => m.name !== name);
  return value === '' && op === '=' ? rest : [...rest, { name, op, value }];
}

/** Is the text cursor inside a value (for autocomplete): returns the label being typed and prefix. */
export function completionContext(text: string, cursor: number): { kind: 'name'; prefix: string } | { kind: 'value'; label: string; prefix: string } {
  const before = text.slice(0, cursor);
  const v = /([a-zA-Z_][a-zA-Z0-9_.]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(before);
  if (v) return { kind: 'value', label: v[1], prefix: v[3] };
  const n = /(?:^|[{,\s])([a-zA-Z_][a-zA-Z0-9_.]*)?$/.exec(before);
  return { kind: 'name', prefix: n?.[1] ?? '' };
}

// DEV-ONLY fixture server. Not a test double for the real `kiln server`, not used by CI.
// Serves ui/dist and a synthetic implementation of the API contract with a "rideshare" story:
// three regions; us-west-1 alternates between low and high CPU every 5 minutes with
// mutexLock at ~33% (low) and ~71% (high) of that region's CPU. Also an "e2e-app" service
// (hot_function, only_in_us_west in us-west-1, grows rising over time) for `npm run e2e`.
//   node dev/server.mjs [port]   (default 4040; env DIST to serve another folder)
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const DIST = process.env.DIST ?? path.join(here, '..', 'dist');
const PORT = Number(process.argv[2] ?? process.env.PORT ?? 4040);
const START = Math.floor(Date.now() / 1000);
const PT = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';
const RATE = 100;

// ---- synthetic data ---------------------------------------------------------------------------
const HTTP = ['runtime.goexit', 'net/http.(*conn).serve', 'net/http.serverHandler.ServeHTTP', 'net/http.(*ServeMux).ServeHTTP', 'net/http.HandlerFunc.ServeHTTP'];
const route = (v, fn) => [...HTTP, `main.${v}Route`, `rideshare/${v}.${fn}`];
const nearest = ['rideshare/utility.FindNearestVehicle'];
const lock = [...nearest, 'rideshare/utility.checkDriverAvailability', 'rideshare/utility.mutexLock'];
const VEH = { car: 'OrderCar', bike: 'OrderBike', scooter: 'OrderScooter' };
const VSHARE = { car: 0.55, bike: 0.25, scooter: 0.2 };

function hash(n) {
  n = Math.imul(n ^ (n >>> 16), 0x45d9f3b);
  n = Math.imul(n ^ (n >>> 16), 0x45d9f3b);
  return ((n ^ (n >>> 16)) >>> 0) / 4294967296;
}

const MSHARE = { car: 0.7, bike: 0.2, scooter: 0.1 };

/** Stacks with samples per 10 s for one series (region, vehicle) at time t. The region's total is
 *  split over its series so that mutexLock's share of the region is exact (before noise). */
function rideshare(region, vehicle, t) {
  const noise = 0.93 + 0.14 * hash(Math.floor(t / 10) * 31 + region.length * 7);
  const N = region === 'eu-north-1' ? 300 : 360; // region samples per 10 s at 100 Hz (~1 core over 3 instances)
  let mutexShare = 0.08;
  let scale = 1;
  if (region === 'us-west-1') {
    const high = Math.floor(t / 300) % 2 === 1;
    // low: mutexLock 33% of the region; high: 71% (other work unchanged, so CPU ~2.3x).
    mutexShare = high ? 0.71 : 0.33;
    scale = high ? 0.67 / 0.29 : 1;
  }
  const total = N * scale * noise;
  const mutex = total * mutexShare;
  const other = region === 'us-west-1' ? N * 0.67 * noise : total - mutex;
  const out = [];
  if (vehicle === '') {
    const o = other * 0.2;
    out.push([['runtime.goexit', 'runtime.gcBgMarkWorker', 'runtime.gcDrain', 'runtime.scanobject'], o * 0.4]);
    out.push([['runtime.goexit', 'runtime.mcall', 'runtime.schedule', 'runtime.findRunnable'], o * 0.25]);
    out.push([[...HTTP, 'net/http.(*response).finishRequest', 'bufio.(*Writer).Flush', 'syscall.write'], o * 0.2]);
    out.push([['runtime.goexit', 'main.main', 'rideshare/agent.(*Session).Flush', 'compress/gzip.(*Writer).Write'], o * 0.15]);
    return out;
  }
  const fn = VEH[vehicle];
  const base = route(vehicle, fn);
  const work = other * 0.8 * VSHARE[vehicle];
  out.push([[...base, ...nearest, 'rideshare/utility.distance', 'math.Sqrt'], work * 0.35]);
  out.push([[...base, ...nearest, 'rideshare/utility.sortVehicles', 'sort.Slice'], work * 0.25]);
  out.push([[...base, 'encoding/json.Marshal', 'encoding/json.(*encodeState).marshal'], work * 0.2]);
  out.push([[...base, 'rideshare/utility.logRequest', 'fmt.Sprintf'], work * 0.1]);
  out.push([base, work * 0.1]);
  out.push([[...base, ...lock], mutex * MSHARE[vehicle]]);
  return out;
}

function e2eapp(region, _vehicle, t) {
  const grows = 40 * Math.max(0, (t - (START - 3600)) / 3600);
  const out = [
    [['main', 'run', 'hot_function'], 60],
    [['main', 'run', 'warm_function'], 25],
    [['main', 'run', 'grows'], grows],
    [['main', 'idle'], 10],
  ];
  if (region === 'us-west-1') out.push([['main', 'run', 'only_in_us_west'], 30]);
  return out;
}

const SERIES = [];
for (const region of ['us-east-1', 'eu-north-1', 'us-west-1'])
  for (const vehicle of ['car', 'bike', 'scooter', ''])
    SERIES.push({ labels: { service_name: 'rideshare', region, vehicle }, gen: rideshare });
for (const region of ['us-east-1', 'us-west-1']) SERIES.push({ labels: { service_name: 'e2e-app', region, vehicle: '' }, gen: e2eapp });

// ---- query parsing ----------------------------------------------------------------------------
function parseQuery(q) {
  const b = q.indexOf('{');
  const pt = (b < 0 ? q : q.slice(0, b)).trim();
  const body = b < 0 ? '' : q.slice(b + 1, q.lastIndexOf('}'));
  const ms = [];
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_.]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?/gy;
  let m;
  while ((m = re.exec(body))) ms.push({ name: m[1], op: m[2], value: m[3].replace(/\\(.)/g, '$1') });
  return { pt, ms };
}
function matches(labels, ms) {
  return ms.every(({ name, op, value }) => {
    const v = labels[name] ?? '';
    if (op === '=') return v === value;
    if (op === '!=') return v !== value;
    const r = new RegExp(`^(?:${value})$`);
    return op === '=~' ? r.test(v) : !r.test(v);
  });
}
function parseTime(s, now = Math.floor(Date.now() / 1000)) {
  if (!s || s === 'now') return now;
  const r = /^now-(\d+)([smhdw])$/.exec(s);
  if (r) return now - Number(r[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[r[2]];
  return Number(s);
}
function stepFor(from, until) {
  return Math.max(10, Math.ceil((until - from) / 360 / 10) * 10);
}

/** Aggregate matching series over [from, until): stacks map + timeline. */
function aggregate(query, from, until, groupBy) {
  const { ms } = parseQuery(query);
  const step = stepFor(from, until);
  const start = Math.floor(from / step) * step;
  const n = Math.max(1, Math.ceil((until - start) / step));
  const stacks = new Map();
  const samples = new Array(n).fill(0);
  const groups = new Map();
  for (const s of SERIES) {
    if (!matches(s.labels, ms)) continue;
    const gv = groupBy ? s.labels[groupBy] ?? '' : '';
    if (groupBy && !groups.has(gv)) groups.set(gv, new Array(n).fill(0));
    for (let i = 0; i < n; i++) {
      const t = start + i * step;
      if (t + step <= from || t >= until) continue;
      for (const [stack, per10] of s.gen(s.labels.region, s.labels.vehicle, t)) {
        const v = Math.round((per10 * step) / 10);
        if (v <= 0) continue;
        const k = stack.join(';');
        stacks.set(k, (stacks.get(k) ?? 0) + v);
        samples[i] += v;
        if (groupBy) groups.get(gv)[i] += v;
      }
    }
  }
  return { stacks, timeline: { startTime: start, samples, durationDelta: step }, groups };
}

function tree(stacks) {
  const root = { name: 'total', total: 0, self: 0, children: new Map() };
  for (const [k, v] of stacks) {
    let n = root;
    n.total += v;
    for (const f of k.split(';')) {
      let c = n.children.get(f);
      if (!c) n.children.set(f, (c = { name: f, total: 0, self: 0, children: new Map() }));
      c.total += v;
      n = c;
    }
    n.self += v;
  }
  return root;
}

function encodeSingle(root) {
  const names = [], idx = new Map(), levels = [], prevEnd = [];
  let maxSelf = 0;
  const ni = (s) => { if (!idx.has(s)) { idx.set(s, names.length); names.push(s); } return idx.get(s); };
  const walk = (n, d, x) => {
    levels[d] ??= []; prevEnd[d] ??= 0;
    levels[d].push(x - prevEnd[d], n.total, n.self, ni(n.name));
    prevEnd[d] = x + n.total;
    maxSelf = Math.max(maxSelf, n.self);
    let cx = x;
    for (const c of [...n.children.values()].sort((a, b) => a.name.localeCompare(b.name))) { walk(c, d + 1, cx); cx += c.total; }
  };
  walk(root, 0, 0);
  return { names, levels, numTicks: root.total, maxSelf };
}

function encodeDouble(l, r) {
  const names = [], idx = new Map(), levels = [], lEnd = [], rEnd = [];
  let maxSelf = 0;
  const ni = (s) => { if (!idx.has(s)) { idx.set(s, names.length); names.push(s); } return idx.get(s); };
  const empty = (name) => ({ name, total: 0, self: 0, children: new Map() });
  const walk = (a, b, d, lx, rx) => {
    levels[d] ??= []; lEnd[d] ??= 0; rEnd[d] ??= 0;
    levels[d].push(lx - lEnd[d], a.total, a.self, rx - rEnd[d], b.total, b.self, ni(a.name || b.name));
    lEnd[d] = lx + a.total; rEnd[d] = rx + b.total;
    maxSelf = Math.max(maxSelf, a.self, b.self);
    const keys = [...new Set([...a.children.keys(), ...b.children.keys()])].sort();
    let cl = lx, cr = rx;
    for (const k of keys) {
      const ca = a.children.get(k) ?? empty(k), cb = b.children.get(k) ?? empty(k);
      walk(ca, cb, d + 1, cl, cr);
      cl += ca.total; cr += cb.total;
    }
  };
  walk(l, r, 0, 0, 0);
  return { names, levels, numTicks: l.total + r.total, maxSelf };
}

function folded(stacks) {
  return [...stacks].map(([k, v]) => `${k} ${v}`).join('\n') + '\n';
}

// ---- HTTP ------------------------------------------------------------------------------------
const json = (res, body, code = 200) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };

const server = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  const p = u.searchParams;
  const g = (k) => p.get(k) ?? '';
  const range = (f, t) => [parseTime(g(f)), parseTime(g(t))];
  try {
    switch (u.pathname) {
      case '/healthz': res.end('ok'); return;
      case '/api/v1/profile-types': return json(res, [PT]);
      case '/pyroscope/label-names': {
        const { ms } = parseQuery(g('query'));
        const set = new Set();
        for (const s of SERIES) if (matches(s.labels, ms)) for (const [k, v] of Object.entries(s.labels)) if (v !== '') set.add(k);
        return json(res, [...set].sort());
      }
      case '/pyroscope/label-values': {
        const { ms } = parseQuery(g('query'));
        const set = new Set();
        for (const s of SERIES) if (matches(s.labels, ms) && s.labels[g('label')]) set.add(s.labels[g('label')]);
        return json(res, [...set].sort());
      }
      case '/pyroscope/render': {
        const [f, t] = range('from', 'until');
        const a = aggregate(g('query'), f, t);
        return json(res, {
          flamebearer: encodeSingle(tree(a.stacks)),
          metadata: { format: 'single', units: 'samples', sampleRate: RATE, spyName: 'ebpf' },
          timeline: a.timeline,
        });
      }
      case '/pyroscope/render-diff': {
        const [lf, lu] = range('leftFrom', 'leftUntil');
        const [rf, ru] = range('rightFrom', 'rightUntil');
        const l = tree(aggregate(g('leftQuery'), lf, lu).stacks);
        const r = tree(aggregate(g('rightQuery'), rf, ru).stacks);
        return json(res, {
          flamebearer: encodeDouble(l, r),
          metadata: { format: 'double', units: 'samples', sampleRate: RATE, spyName: 'ebpf' },
          leftTicks: l.total,
          rightTicks: r.total,
        });
      }
      case '/api/v1/group-totals': {
        const [f, t] = range('from', 'until');
        const a = aggregate(g('query'), f, t, g('groupBy'));
        const groups = [...a.groups].map(([value, samples]) => ({
          value,
          total: samples.reduce((x, y) => x + y, 0),
          timeline: { ...a.timeline, samples },
        }));
        return json(res, { groupBy: g('groupBy'), total: groups.reduce((x, y) => x + y.total, 0), groups });
      }
      case '/api/v1/export': {
        const [f, t] = range('from', 'until');
        const text = folded(aggregate(g('query'), f, t).stacks);
        if (g('format') === 'folded') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(text); return; }
        // Dev stub: not a real pprof, just gzip'd folded text.
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-disposition': 'attachment; filename="profile.pb.gz"' });
        res.end(zlib.gzipSync(text));
        return;
      }
    }
    let file = path.join(DIST, path.normalize(u.pathname).replace(/^(\.\.[/\\])+/, ''));
    if (u.pathname === '/' || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(DIST, 'index.html');
    res.writeHead(200, { 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  } catch (e) {
    json(res, { error: String(e) }, 500);
  }
});
server.listen(PORT, '127.0.0.1', () => console.log(`kiln dev fixture server on http://127.0.0.1:${PORT} (serving ${DIST})`));

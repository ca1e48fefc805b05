// End-to-end check of the Kiln UI against a running server, in Debian's headless chromium.
//   KILN_URL=http://127.0.0.1:40123 ARTIFACTS_DIR=/tmp/art node e2e/run.mjs
// Optional KILN_E2E_EXPECT (JSON):
//   { "service": "e2e-app",                  service_name to open (default: first one the API lists)
//     "topFunction": "hot_function",         expected first row of the top table (sorted by self)
//     "tag": { "name": "region", "value": "us-west-1", "expectFunction": "only_in_us_west" },
//     "diff": { "grownFunction": "grows",    must be colored red ("grew") in the diff view
//               "leftFrom": ..., "leftUntil": ..., "rightFrom": ..., "rightUntil": ... },  optional;
//               default: left = first half, right = second half of [from, until]
//     "from": 1700000000, "until": 1700003600,  range (unix seconds or now-1h...; default now-1h..now)
//     "profileType": "process_cpu:cpu:nanoseconds:cpu:nanoseconds" }
// Env CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 30000).
// Writes single.png, tag-explorer.png, comparison.png, diff.png into ARTIFACTS_DIR.
// Prints "N passed, M failed" last; exits non-zero on any failure.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = (process.env.KILN_URL ?? '').replace(/\/+$/, '');
if (!BASE) {
  console.error('KILN_URL is required (e.g. http://127.0.0.1:40123)');
  process.exit(2);
}
const ART = path.resolve(process.env.ARTIFACTS_DIR ?? 'e2e-artifacts');
fs.mkdirSync(ART, { recursive: true });
let expect = {};
try {
  expect = process.env.KILN_E2E_EXPECT ? JSON.parse(process.env.KILN_E2E_EXPECT) : {};
} catch (e) {
  console.error(`KILN_E2E_EXPECT is not valid JSON: ${e.message}`);
  process.exit(2);
}
const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS ?? 30000);
const PT = expect.profileType ?? 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';
const FROM = String(expect.from ?? 'now-1h');
const UNTIL = String(expect.until ?? 'now');

let passed = 0;
let failed = 0;
const check = (ok, what) => {
  if (ok) {
    passed++;
    console.log(`  ok   ${what}`);
  } else {
    failed++;
    console.log(`  FAIL ${what}`);
  }
  return ok;
};
/** Function name equality tolerant of package prefixes: "hot_function" matches "main.hot_function". */
const sameFn = (actual, want) =>
  actual === want || ['.', '/', '::', ' '].some((sep) => actual.endsWith(sep + want));

const q = (ms) => `${PT}{${ms.map(([k, v]) => `${k}="${v}"`).join(',')}}`;
const link = (params) => `${BASE}/?${new URLSearchParams({ from: FROM, until: UNTIL, ...params })}`;

async function waitReady(page, view) {
  await page.waitForFunction(
    (v) => {
      const el = document.querySelector(`[data-testid="view-${v}"]`);
      const d = window.__kilnDebug;
      return el && (el.dataset.state === 'ready' || el.dataset.state === 'error') && d && d.pending === 0;
    },
    view,
    { timeout: TIMEOUT },
  );
  const state = await page.$eval(`[data-testid="view-${view}"]`, (el) => el.dataset.state);
  if (state === 'error') {
    const msg = await page.$eval('[data-testid="error"]', (el) => el.textContent).catch(() => '');
    throw new Error(`${view} view shows an error: ${msg}`);
  }
  await page.waitForTimeout(250); // let animations and resize observers settle
}

const nodes = (page, id) => page.evaluate((i) => window.__kilnDebug.nodes(i), id);
const summary = (ns) => ns.map((n) => `${n.name}:${n.total}`).sort().join('|');

async function step(name, fn) {
  console.log(`• ${name}`);
  try {
    await fn();
  } catch (e) {
    check(false, `${name}: ${e.message.split('\n')[0]}`);
  }
}

const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-e2e-'));
// A fresh profile directory (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1440, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = browser.pages()[0] ?? (await browser.newPage());
const jsErrors = [];
page.on('pageerror', (e) => jsErrors.push(e.message));
page.on('console', (m) => { if (m.type() === 'error') jsErrors.push(m.text()); });

let service = expect.service;
try {
  await step('server reachable and service known', async () => {
    const r = await page.request.get(`${BASE}/healthz`);
    check(r.ok(), `GET /healthz → ${r.status()}`);
    if (!service) {
      const vals = await (await page.request.get(`${BASE}/pyroscope/label-values?${new URLSearchParams({ label: 'service_name', query: `${PT}{}`, from: FROM, until: UNTIL })}`)).json();
      service = vals[0];
    }
    check(!!service, `service to open: ${service}`);
  });

  let before = [];
  await step('single view', async () => {
    await page.goto(link({ query: q([['service_name', service]]) }));
    await waitReady(page, 'single');
    check((await page.title()) === 'Kiln', 'page title is "Kiln"');
    const rows = await page.$$eval('[data-testid="top-row"]', (trs) => trs.map((t) => t.dataset.name));
    check(rows.length > 0, `top table has rows (${rows.length})`);
    before = await nodes(page, 'single');
    check(before.length > 1, `flame graph rendered ${before.length} nodes`);
    if (expect.topFunction) {
      check(rows.length > 0 && sameFn(rows[0], expect.topFunction), `top table's first row is ${expect.topFunction} (got ${rows[0]})`);
      check(before.some((n) => sameFn(n.name, expect.topFunction)), `flame graph shows ${expect.topFunction}`);
    }
    await page.screenshot({ path: path.join(ART, 'single.png'), fullPage: true });
  });

  await step('tag explorer', async () => {
    const tag = expect.tag;
    const groupBy = tag?.name;
    await page.goto(link({ view: 'explore', query: q([['service_name', service]]), ...(groupBy ? { groupBy } : {}) }));
    await waitReady(page, 'explore');
    const values = await page.$$eval('[data-testid="explore-row"]', (trs) => trs.map((t) => t.dataset.value));
    check(values.length > 0, `tag explorer lists values (${values.join(', ')})`);
    await page.screenshot({ path: path.join(ART, 'tag-explorer.png'), fullPage: true });
    if (!tag) return;
    check(values.includes(tag.value), `value ${tag.value} listed for ${tag.name}`);
    await page.click(`[data-testid="explore-row"][data-value="${tag.value}"]`);
    await waitReady(page, 'single');
    const url = decodeURIComponent(page.url());
    check(url.includes(`${tag.name}="${tag.value}"`), `clicking the value filters the single view (${tag.name}="${tag.value}" in the URL)`);
    const after = await nodes(page, 'single');
    check(after.length > 0 && summary(after) !== summary(before), 'flame graph changed after filtering by the tag');
    if (tag.expectFunction) {
      check(after.some((n) => sameFn(n.name, tag.expectFunction)), `filtered flame graph shows ${tag.expectFunction}`);
      const rows = await page.$$eval('[data-testid="top-row"]', (trs) => trs.map((t) => t.dataset.name));
      check(rows.some((r) => sameFn(r, tag.expectFunction)), `filtered top table lists ${tag.expectFunction}`);
    }
  });

  const sides = {};
  for (const k of ['leftFrom', 'leftUntil', 'rightFrom', 'rightUntil']) if (expect.diff?.[k] !== undefined) sides[k] = String(expect.diff[k]);

  await step('comparison view', async () => {
    await page.goto(link({ view: 'compare', query: q([['service_name', service]]), ...sides }));
    await waitReady(page, 'compare');
    const l = await nodes(page, 'left');
    const r = await nodes(page, 'right');
    check(l.length > 1 && r.length > 1, `two flame graphs rendered (left ${l.length} nodes, right ${r.length} nodes)`);
    const tl = await page.$$('[data-testid="timeline-left"] canvas, [data-testid="timeline-right"] canvas');
    check(tl.length >= 2, 'two timelines rendered');
    await page.screenshot({ path: path.join(ART, 'comparison.png'), fullPage: true });
  });

  await step('diff view', async () => {
    await page.goto(link({ view: 'diff', query: q([['service_name', service]]), ...sides }));
    await waitReady(page, 'diff');
    const d = await nodes(page, 'diff');
    check(d.length > 1, `diff flame graph rendered ${d.length} nodes`);
    const grown = expect.diff?.grownFunction;
    if (grown) {
      const n = d.find((x) => sameFn(x.name, grown));
      const rgb = n ? (n.color.match(/\d+/g) ?? []).map(Number) : [];
      check(!!n && n.diffClass === 'grew', `${grown} is marked as grown (${n ? `${n.diffPercent?.toFixed?.(1)}%` : 'not drawn'})`);
      check(rgb.length === 3 && rgb[0] > rgb[1] + 30 && rgb[0] > rgb[2] + 30, `${grown} is colored red (${n?.color})`);
    }
    await page.screenshot({ path: path.join(ART, 'diff.png'), fullPage: true });
  });

  check(jsErrors.length === 0, `no JavaScript errors in the page${jsErrors.length ? ': ' + jsErrors.slice(0, 3).join(' | ') : ''}`);
} finally {
  await browser.close();
  fs.rmSync(userDir, { recursive: true, force: true });
}
console.log(`screenshots in ${ART}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

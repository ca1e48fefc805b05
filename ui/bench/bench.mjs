// `npm run bench`: builds bench/ with Vite, opens it in headless Debian chromium and prints the
// time to render a generated 10 000-node flame graph (decode + layout + draw) and zoom frame times.
//   BENCH_NODES=10000 CHROMIUM=/usr/bin/chromium npm run bench
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, 'dist');
await build({ root: here, base: './', logLevel: 'warn', build: { outDir: out, emptyOutDir: true } });

const server = http.createServer((req, res) => {
  const p = path.join(out, decodeURIComponent(new URL(req.url, 'http://x').pathname));
  const f = fs.existsSync(p) && fs.statSync(p).isFile() ? p : path.join(out, 'index.html');
  const type = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html' }[path.extname(f)] ?? 'application/octet-stream';
  res.writeHead(200, { 'content-type': type });
  fs.createReadStream(f).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;

const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-'));
const ctx = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1440, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let code = 0;
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const nodes = Number(process.env.BENCH_NODES ?? 10000);
  await page.goto(`http://127.0.0.1:${port}/index.html?nodes=${nodes}`);
  await page.waitForFunction(() => window.__bench, null, { timeout: 120000 });
  const r = await page.evaluate(() => window.__bench);
  if (r.error) throw new Error(r.error);
  const version = ctx.browser()?.version() ?? 'chromium';
  console.log(`chromium ${version}, ${os.cpus().length} CPUs, 1440 px wide canvas`);
  console.log(`${r.nodes}-node flame graph, first render (decode + layout + draw), ${r.runs} runs: median ${r.firstRenderMs.median} ms, min ${r.firstRenderMs.min} ms, max ${r.firstRenderMs.max} ms`);
  console.log(`zoom animation frames (${r.zoomFrames}): median ${r.zoomFrameMs.median} ms, max ${r.zoomFrameMs.max} ms`);
  const ok = r.firstRenderMs.median < 300;
  console.log(ok ? 'OK: under the 300 ms budget' : 'OVER the 300 ms budget');
  if (!ok) code = 1;
} catch (e) {
  console.error(`bench failed: ${e.message}`);
  code = 1;
} finally {
  await ctx.close();
  server.close();
  fs.rmSync(userDir, { recursive: true, force: true });
}
process.exit(code);

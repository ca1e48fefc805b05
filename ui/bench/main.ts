// Flame graph render benchmark page (built by bench/bench.mjs, run in headless chromium).
import { decodeSingle, nodeCount, toTree, type TreeNode } from '../src/lib/flamebearer';
import { syntheticFlamebearer } from '../src/lib/synthetic';
import { FlameGraph } from '../src/ui/flamegraph';

const N = Number(new URLSearchParams(location.search).get('nodes') ?? 10000);
const RUNS = 9;
const fb = syntheticFlamebearer(N, 42);
const host = document.getElementById('fg')!;
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: +s[Math.floor(s.length / 2)].toFixed(2), min: +s[0].toFixed(2), max: +s[s.length - 1].toFixed(2) };
};
const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r(null)));

async function run() {
  const full: number[] = [];
  let g: FlameGraph | null = null;
  let nodes = 0;
  for (let i = 0; i < RUNS; i++) {
    g?.destroy();
    await nextFrame();
    const t0 = performance.now();
    // Everything from JSON in hand to pixels: decode, layout, draw, and a pixel read-back to flush.
    const data = decodeSingle(JSON.parse(JSON.stringify(fb)));
    g = new FlameGraph({ id: 'bench' });
    host.append(g.el);
    g.setData(data);
    (g.el.querySelector('canvas') as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, 1, 1);
    full.push(performance.now() - t0);
    nodes = nodeCount(data);
  }
  // Zoom: frame times while zooming into nodes along the heaviest path and back out.
  const tree = toTree(decodeSingle(fb));
  const paths: string[] = [];
  let n: TreeNode = tree;
  const stack: string[] = [];
  while (n.children.length && paths.length < 15) {
    n = n.children.reduce((a, b) => (b.total > a.total ? b : a));
    stack.push(n.name);
    paths.push(stack.join(';'));
  }
  const frames: number[] = [];
  for (const p of [...paths, '', ...paths.slice(0, 5).reverse()]) {
    g!.setFocusPath(p);
    frames.push(g!.lastRenderMs);
    for (let f = 0; f < 12; f++) {
      await nextFrame();
      frames.push(g!.lastRenderMs);
    }
  }
  const drawn = g!.renderedNodes().length;
  const result = { nodes, drawnAtEnd: drawn, runs: RUNS, firstRenderMs: stats(full), zoomFrameMs: stats(frames), zoomFrames: frames.length };
  document.getElementById('out')!.textContent = JSON.stringify(result, null, 2);
  (window as unknown as { __bench: unknown }).__bench = result;
}
run().catch((e) => {
  (window as unknown as { __bench: unknown }).__bench = { error: String(e) };
});

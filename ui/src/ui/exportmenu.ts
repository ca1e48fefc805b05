// Export menu: pprof / folded from the API, flamebearer JSON of the data in hand, PNG and SVG of the graph.
import { api } from '../lib/api';
import { h, download, downloadUrl } from './dom';
import type { FlameGraph } from './flamegraph';

export interface ExportSource {
  graph: () => FlameGraph | null;
  json: () => unknown;
  /** For the API exports (single view only). */
  query?: () => { query: string; from: string; until: string };
  basename: () => string;
}

export function exportMenu(src: ExportSource): HTMLElement {
  const panel = h('div', { class: 'menu-panel', hidden: true, testid: 'export-menu' });
  const item = (label: string, testid: string, fn: () => void) =>
    h('button', { class: 'menu-item', testid, onclick: () => { panel.hidden = true; fn(); } }, label);
  const items: HTMLElement[] = [];
  if (src.query) {
    items.push(
      item('pprof (.pb.gz)', 'export-pprof', () => {
        const q = src.query!();
        downloadUrl(api.exportUrl(q.query, q.from, q.until, 'pprof'), `${src.basename()}.pb.gz`);
      }),
      item('Folded stacks (.txt)', 'export-folded', () => {
        const q = src.query!();
        downloadUrl(api.exportUrl(q.query, q.from, q.until, 'folded'), `${src.basename()}.folded.txt`);
      }),
    );
  }
  items.push(
    item('Flamebearer JSON', 'export-json', () => download(`${src.basename()}.json`, JSON.stringify(src.json()), 'application/json')),
    item('PNG image', 'export-png', async () => {
      const b = await src.graph()?.toPNG();
      if (b) download(`${src.basename()}.png`, b);
    }),
    item('SVG image', 'export-svg', () => {
      const g = src.graph();
      if (g) download(`${src.basename()}.svg`, g.toSVG(), 'image/svg+xml');
    }),
  );
  panel.append(...items);
  const btn = h('button', { class: 'btn', testid: 'export', onclick: () => { panel.hidden = !panel.hidden; } }, 'Export ▾');
  document.addEventListener('click', (e) => {
    if (!wrap.contains(e.target as Node)) panel.hidden = true;
  });
  const wrap = h('div', { class: 'menu' }, btn, panel);
  return wrap;
}

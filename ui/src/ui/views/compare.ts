// Comparison view: two timelines with their own ranges (and selectors), two flame graphs side by side.
import { api } from '../../lib/api';
import { decodeSingle, type SingleProfile } from '../../lib/flamebearer';
import type { AppState } from '../../lib/urlstate';
import { debug } from '../debug';
import { errorBox, h } from '../dom';
import { exportMenu } from '../exportmenu';
import { FlameGraph } from '../flamegraph';
import { getState, navigate } from '../store';
import { track } from '../track';
import { summaryParts, valueUnit } from '../../lib/units';
import { comparePresets, SidePicker, sideRanges, type Side } from './sides';

export class CompareView {
  readonly el: HTMLElement;
  private pickers: Record<Side, SidePicker>;
  private graphs: Record<Side, FlameGraph>;
  private status: Record<Side, HTMLElement>;
  private profiles: Record<Side, SingleProfile | null> = { left: null, right: null };
  private keys: Record<Side, string> = { left: '', right: '' };
  private gens: Record<Side, number> = { left: 0, right: 0 };
  private search: HTMLInputElement;
  private loaded: Record<Side, boolean> = { left: false, right: false };

  constructor() {
    this.pickers = { left: new SidePicker('left'), right: new SidePicker('right') };
    this.graphs = { left: new FlameGraph({ id: 'left' }), right: new FlameGraph({ id: 'right' }) };
    this.status = { left: h('div', { class: 'muted small' }), right: h('div', { class: 'muted small' }) };
    this.search = h('input', { type: 'search', class: 'search', placeholder: 'Search functions…', testid: 'search', oninput: () => navigate({ search: this.search.value }, { replace: true }) });
    this.el = h('section', { class: 'view compare', testid: 'view-compare' },
      h('div', { class: 'toolbar' }, comparePresets(getState), this.search,
        h('button', { class: 'btn', testid: 'reset', onclick: () => { this.graphs.left.reset(); this.graphs.right.reset(); } }, 'Reset zoom'),
        h('button', { class: 'btn primary', testid: 'open-diff', onclick: () => navigate({ view: 'diff' }) }, 'Open as diff →')),
      h('div', { class: 'two-col' },
        ...(['left', 'right'] as Side[]).map((side) =>
          h('div', { class: 'col' }, this.pickers[side].el,
            h('div', { class: 'card' },
              h('div', { class: 'row space' }, this.status[side],
                exportMenu({ graph: () => this.graphs[side], json: () => this.profiles[side], basename: () => `kiln-${side}` })),
              this.graphs[side].el))),
      ),
    );
  }

  destroy(): void {
    for (const side of ['left', 'right'] as Side[]) {
      this.pickers[side].destroy();
      this.graphs[side].destroy();
    }
    this.el.remove();
  }

  update(s: AppState): void {
    if (document.activeElement !== this.search) this.search.value = s.search;
    const ranges = sideRanges(s);
    for (const side of ['left', 'right'] as Side[]) {
      this.pickers[side].update(s);
      this.graphs[side].setSearch(s.search);
      const r = ranges[side];
      const key = `${r.query}|${r.from}|${r.until}`;
      if (key !== this.keys[side]) {
        this.keys[side] = key;
        this.fetch(side, r.query, r.from, r.until);
      }
    }
  }

  private async fetch(side: Side, query: string, from: string, until: string): Promise<void> {
    const gen = ++this.gens[side];
    this.loaded[side] = false;
    this.el.dataset.state = 'loading';
    this.status[side].textContent = 'Loading…';
    try {
      const p = await track(api.render(query, from, until, 1024));
      if (gen !== this.gens[side]) return;
      this.profiles[side] = p;
      const data = decodeSingle(p.flamebearer, p.metadata);
      this.graphs[side].setData(data);
      this.status[side].textContent = [...summaryParts(data.numTicks, valueUnit(p.metadata, getState().profileType)), query].join(' · ');
      this.status[side].title = this.status[side].textContent;
      this.loaded[side] = true;
      if (this.loaded.left && this.loaded.right) this.el.dataset.state = 'ready';
      debug.renders++;
    } catch (e) {
      if (gen !== this.gens[side]) return;
      this.el.dataset.state = 'error';
      this.status[side].replaceChildren(errorBox(`Failed to load ${side}: ${(e as Error).message}`));
    }
  }
}

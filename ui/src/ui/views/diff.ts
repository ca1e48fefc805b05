// Diff view: one flame graph colored by change (red = grew, green = shrank), normalized or absolute.
import { api } from '../../lib/api';
import { decodeDouble, type DiffProfile } from '../../lib/flamebearer';
import type { AppState } from '../../lib/urlstate';
import { debug } from '../debug';
import { errorBox, h } from '../dom';
import { exportMenu } from '../exportmenu';
import { FlameGraph } from '../flamegraph';
import { getState, navigate } from '../store';
import { track } from '../track';
import { summaryParts, valueUnit } from '../../lib/units';
import { comparePresets, SidePicker, sideRanges, type Side } from './sides';

export class DiffView {
  readonly el: HTMLElement;
  private pickers: Record<Side, SidePicker>;
  private graph: FlameGraph;
  private status: HTMLElement;
  private search: HTMLInputElement;
  private modeBtns: Record<'normalized' | 'absolute', HTMLButtonElement>;
  private profile: DiffProfile | null = null;
  private key = '';
  private gen = 0;
  private body: HTMLElement;

  constructor() {
    this.pickers = { left: new SidePicker('left'), right: new SidePicker('right') };
    this.graph = new FlameGraph({ id: 'diff' });
    this.status = h('span', { class: 'muted small', testid: 'status' });
    this.search = h('input', { type: 'search', class: 'search', placeholder: 'Search functions…', testid: 'search', oninput: () => navigate({ search: this.search.value }, { replace: true }) });
    this.modeBtns = {
      normalized: h('button', { testid: 'diff-normalized', title: 'Compare each function’s share of its side’s total', onclick: () => navigate({ diffMode: 'normalized' }) }, 'Normalized (share)'),
      absolute: h('button', { testid: 'diff-absolute', title: 'Compare raw CPU time', onclick: () => navigate({ diffMode: 'absolute' }) }, 'Absolute'),
    };
    this.body = h('div', { class: 'card' },
      h('div', { class: 'row space' },
        h('div', { class: 'legend' },
          h('span', { class: 'muted small' }, 'shrank'),
          h('span', { class: 'legend-bar' }),
          h('span', { class: 'muted small' }, 'grew'),
          h('span', { class: 'muted small legend-note' }, 'width = left + right; color = change from left to right')),
        this.status),
      this.graph.el);
    this.el = h('section', { class: 'view diff', testid: 'view-diff' },
      h('div', { class: 'two-col' }, this.pickers.left.el, this.pickers.right.el),
      h('div', { class: 'toolbar' },
        h('div', { class: 'segmented' }, this.modeBtns.normalized, this.modeBtns.absolute),
        comparePresets(getState),
        this.search,
        h('button', { class: 'btn', testid: 'reset', onclick: () => this.graph.reset() }, 'Reset zoom'),
        exportMenu({ graph: () => this.graph, json: () => this.profile, basename: () => 'kiln-diff' })),
      this.body,
    );
  }

  destroy(): void {
    this.pickers.left.destroy();
    this.pickers.right.destroy();
    this.graph.destroy();
    this.el.remove();
  }

  update(s: AppState): void {
    if (document.activeElement !== this.search) this.search.value = s.search;
    this.modeBtns.normalized.classList.toggle('active', s.diffMode === 'normalized');
    this.modeBtns.absolute.classList.toggle('active', s.diffMode === 'absolute');
    this.pickers.left.update(s);
    this.pickers.right.update(s);
    this.graph.setDiffMode(s.diffMode);
    this.graph.setSearch(s.search);
    const r = sideRanges(s);
    const key = JSON.stringify(r);
    if (key === this.key) return;
    this.key = key;
    this.fetch(r.left.query, r.left.from, r.left.until, r.right.query, r.right.from, r.right.until);
  }

  private async fetch(leftQuery: string, leftFrom: string, leftUntil: string, rightQuery: string, rightFrom: string, rightUntil: string): Promise<void> {
    const gen = ++this.gen;
    this.el.dataset.state = 'loading';
    this.status.textContent = 'Loading…';
    try {
      const p = await track(api.renderDiff({ leftQuery, leftFrom, leftUntil, rightQuery, rightFrom, rightUntil }, 1024));
      if (gen !== this.gen) return;
      this.profile = p;
      this.graph.setData(decodeDouble(p));
      const unit = valueUnit(p.metadata, getState().profileType);
      this.status.textContent = `left ${summaryParts(p.leftTicks, unit).join(', ')} · right ${summaryParts(p.rightTicks, unit).join(', ')}`;
      this.el.dataset.state = 'ready';
      debug.renders++;
    } catch (e) {
      if (gen !== this.gen) return;
      this.el.dataset.state = 'error';
      this.status.replaceChildren(errorBox(`Failed to load diff: ${(e as Error).message}`));
    }
  }
}

// Single view: timeline (drag = zoom in time), flame graph, top table, both, or sandwich.
import { api } from '../../lib/api';
import { sandwich, topTable, type TopRow } from '../../lib/analysis';
import { decodeSingle, encodeSingle, toTree, type FlameData, type SingleProfile } from '../../lib/flamebearer';
import { parseTime } from '../../lib/timerange';
import { stateQuery, type AppState, type Mode } from '../../lib/urlstate';
import { debug } from '../debug';
import { errorBox, h } from '../dom';
import { exportMenu } from '../exportmenu';
import { FlameGraph } from '../flamegraph';
import { navigate } from '../store';
import { TimelineChart } from '../timeline';
import { TopTable } from '../toptable';
import { track } from '../track';
import { summaryParts, valueUnit } from '../../lib/units';

export class SingleView {
  readonly el: HTMLElement;
  private timeline: TimelineChart;
  private graph: FlameGraph;
  private table: TopTable;
  private callers: FlameGraph;
  private callees: FlameGraph;
  private search: HTMLInputElement;
  private body: HTMLElement;
  private status: HTMLElement;
  private modeBtns = new Map<Mode, HTMLButtonElement>();
  private key = '';
  private gen = 0;
  private profile: SingleProfile | null = null;
  private data: FlameData | null = null;
  private rows: TopRow[] = [];
  private sandwichKey = '';
  private fnInput: HTMLInputElement;
  private fnList: HTMLDataListElement;
  private s!: AppState;

  constructor() {
    this.timeline = new TimelineChart({ height: 140, testid: 'timeline', onSelect: (f, u) => navigate({ from: String(f), until: String(u), focus: '' }) });
    this.graph = new FlameGraph({
      id: 'single',
      onFocusChange: (path) => navigate({ focus: path }),
      onFunctionMenu: (name) => navigate({ mode: 'sandwich', fn: name }),
    });
    this.callers = new FlameGraph({ id: 'callers', inverted: true, onFunctionMenu: (name) => navigate({ fn: name }) });
    this.callees = new FlameGraph({ id: 'callees', onFunctionMenu: (name) => navigate({ fn: name }) });
    this.table = new TopTable({
      onSort: (sort, desc) => navigate({ sort, desc }, { replace: true }),
      onRowClick: (name) => navigate(this.s.mode === 'sandwich' ? { fn: name } : { search: this.s.search === name ? '' : name }),
      onSandwich: (name) => navigate({ mode: 'sandwich', fn: name }),
    });
    this.search = h('input', {
      type: 'search',
      class: 'search',
      placeholder: 'Search functions…',
      testid: 'search',
      oninput: () => navigate({ search: this.search.value }, { replace: true }),
    });
    const modes: [Mode, string][] = [['table', 'Table'], ['both', 'Both'], ['flame', 'Flame graph'], ['sandwich', 'Sandwich']];
    const seg = h('div', { class: 'segmented', role: 'tablist' });
    for (const [m, label] of modes) {
      const b = h('button', { testid: `mode-${m}`, onclick: () => navigate({ mode: m }) }, label);
      this.modeBtns.set(m, b);
      seg.append(b);
    }
    this.fnList = h('datalist', { id: 'fn-list' });
    this.fnInput = h('input', { type: 'text', class: 'mono fn-input', testid: 'sandwich-fn', placeholder: 'function', onchange: () => navigate({ fn: this.fnInput.value }) });
    this.fnInput.setAttribute('list', 'fn-list');
    this.status = h('span', { class: 'status muted', testid: 'status' });
    this.body = h('div', { class: 'single-body' });
    this.el = h('section', { class: 'view single', testid: 'view-single' },
      h('div', { class: 'card' }, this.timeline.el, h('div', { class: 'hint muted small' }, 'Drag on the timeline to zoom in time.')),
      h('div', { class: 'toolbar' },
        seg,
        this.search,
        h('button', { class: 'btn', testid: 'reset', onclick: () => { this.graph.reset(); navigate({ focus: '', search: '' }); } }, 'Reset view'),
        exportMenu({
          graph: () => this.graph,
          json: () => this.profile,
          query: () => ({ query: stateQuery(this.s), from: this.s.from, until: this.s.until }),
          basename: () => `kiln-${this.s.service || 'profile'}`,
        }),
        this.status,
      ),
      this.body,
      this.fnList,
    );
  }

  destroy(): void {
    this.graph.destroy();
    this.callers.destroy();
    this.callees.destroy();
    this.timeline.destroy();
    this.el.remove();
  }

  update(s: AppState): void {
    this.s = s;
    for (const [m, b] of this.modeBtns) b.classList.toggle('active', m === s.mode);
    if (document.activeElement !== this.search) this.search.value = s.search;
    this.layout(s);
    const key = `${stateQuery(s)}|${s.from}|${s.until}`;
    if (key !== this.key) {
      this.key = key;
      this.fetch(s);
    } else {
      this.refresh(s);
    }
  }

  private layoutKey = '';

  private layout(s: AppState): void {
    if (this.layoutKey === s.mode) return;
    this.layoutKey = s.mode;
    const want: HTMLElement[] = [];
    if (s.mode === 'sandwich') {
      want.push(h('div', { class: 'pane table-pane' }, this.table.el));
      want.push(h('div', { class: 'pane card sandwich', testid: 'sandwich' },
        h('div', { class: 'sandwich-head' }, h('strong', {}, 'Sandwich of '), this.fnInput),
        h('div', { class: 'sandwich-label muted small' }, '▲ callers (who calls it)'),
        this.callers.el,
        h('div', { class: 'sandwich-label muted small' }, '▼ callees (what it calls)'),
        this.callees.el));
      this.body.className = 'single-body both';
    } else {
      if (s.mode === 'table' || s.mode === 'both') want.push(h('div', { class: 'pane table-pane' }, this.table.el));
      if (s.mode === 'flame' || s.mode === 'both') want.push(h('div', { class: 'pane flame-pane card' }, this.graph.el));
      this.body.className = `single-body ${s.mode}`;
    }
    this.body.replaceChildren(...want);
  }

  private async fetch(s: AppState): Promise<void> {
    const gen = ++this.gen;
    this.status.textContent = 'Loading…';
    this.el.dataset.state = 'loading';
    try {
      const p = await track(api.render(stateQuery(s), s.from, s.until, 1024));
      if (gen !== this.gen) return;
      this.profile = p;
      this.data = decodeSingle(p.flamebearer, p.metadata);
      this.rows = topTable(toTree(this.data));
      this.sandwichKey = '';
      const f = parseTime(s.from);
      const u = parseTime(s.until);
      const unit = valueUnit(p.metadata, s.profileType);
      this.timeline.setData(p.timeline ? [{ label: s.service || 'total', timeline: p.timeline }] : [], [f, u], [], unit);
      this.graph.setData(this.data, s.focus);
      this.status.textContent = this.data.numTicks
        ? [...summaryParts(this.data.numTicks, unit), `${this.rows.length} functions`].join(' · ')
        : 'No data for this query and range.';
      this.el.dataset.state = 'ready';
      this.refresh(this.s);
      debug.renders++;
    } catch (e) {
      if (gen !== this.gen) return;
      this.el.dataset.state = 'error';
      this.status.textContent = '';
      this.layoutKey = '';
      this.body.replaceChildren(errorBox(`Failed to load profile: ${(e as Error).message}`));
    }
  }

  private refresh(s: AppState): void {
    if (!this.data) return;
    const sw = s.mode === 'sandwich';
    this.graph.setSearch(s.search);
    this.graph.setFocusPath(s.focus);
    this.table.render(this.rows, this.data, s.sort, s.desc, sw ? '' : s.search, sw ? this.fnName(s) : s.search);
    if (sw) this.renderSandwich(s);
  }

  private fnName(s: AppState): string {
    if (s.fn) return s.fn;
    let best = this.rows[0];
    for (const r of this.rows) if (r.self > best.self) best = r;
    return best?.name ?? '';
  }

  private renderSandwich(s: AppState): void {
    const fn = this.fnName(s);
    this.fnInput.value = fn;
    if (this.fnList.childElementCount !== this.rows.length) this.fnList.replaceChildren(...this.rows.map((r) => h('option', { value: r.name })));
    const key = `${this.key}|${fn}`;
    if (key !== this.sandwichKey && this.data) {
      this.sandwichKey = key;
      const { callers, callees } = sandwich(toTree(this.data), fn);
      const meta = { units: this.data.units, sampleRate: this.data.sampleRate };
      this.callers.setData(decodeSingle(encodeSingle(callers), meta));
      this.callees.setData(decodeSingle(encodeSingle(callees), meta));
    }
    this.callers.setSearch(s.search);
    this.callees.setSearch(s.search);
  }
}

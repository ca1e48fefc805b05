// Tag explorer: pick a label, see each value's share (bar chart + table) and its own timeline.
import { api, type GroupTotals } from '../../lib/api';
import { SERIES } from '../../lib/colors';
import { pct } from '../../lib/flamebearer';
import { parseTime } from '../../lib/timerange';
import { stateQuery, type AppState } from '../../lib/urlstate';
import { debug } from '../debug';
import { errorBox, h } from '../dom';
import { navigate } from '../store';
import { TimelineChart } from '../timeline';
import { track } from '../track';
import { axisCaption, formatAmount, formatRate, metaForType, timelineFactor, valueUnit, type ValueUnit } from '../../lib/units';

export class ExploreView {
  readonly el: HTMLElement;
  private labels: HTMLElement;
  private timeline: TimelineChart;
  private content: HTMLElement;
  private key = '';
  private labelsKey = '';
  private gen = 0;

  constructor() {
    this.labels = h('div', { class: 'label-chips', testid: 'explore-labels' });
    this.timeline = new TimelineChart({ height: 200, testid: 'explore-timeline', fill: false, onSelect: (f, u) => navigate({ from: String(f), until: String(u) }) });
    this.content = h('div', { class: 'explore-content' });
    this.el = h('section', { class: 'view explore', testid: 'view-explore' },
      h('div', { class: 'card' }, h('div', { class: 'row' }, h('strong', {}, 'Group by '), this.labels)),
      h('div', { class: 'card' }, this.timeline.el, h('div', { class: 'hint muted small' }, 'Each value over time. Drag to zoom in time.')),
      this.content,
    );
  }

  destroy(): void {
    this.timeline.destroy();
    this.el.remove();
  }

  update(s: AppState): void {
    this.loadLabels(s);
    if (!s.groupBy) return;
    const key = `${stateQuery(s)}|${s.from}|${s.until}|${s.groupBy}`;
    if (key === this.key) return;
    this.key = key;
    this.fetch(s);
  }

  private async loadLabels(s: AppState): Promise<void> {
    const key = `${stateQuery(s)}|${s.from}|${s.until}|${s.groupBy}`;
    if (key === this.labelsKey) return;
    this.labelsKey = key;
    try {
      const names = (await track(api.labelNames(stateQuery(s), s.from, s.until))).filter((n) => !n.startsWith('__') && (n !== 'service_name' || !s.service));
      if (!s.groupBy && names.length) {
        // Default to the first non-service label.
        navigate({ groupBy: names.find((n) => n !== 'service_name') ?? names[0] }, { replace: true });
        return;
      }
      this.labels.replaceChildren(
        ...names.map((n) => h('button', { class: `chip mono${n === s.groupBy ? ' active' : ''}`, testid: `groupby-${n}`, onclick: () => navigate({ groupBy: n }) }, n)),
      );
    } catch (e) {
      this.labels.replaceChildren(errorBox((e as Error).message));
    }
  }

  private async fetch(s: AppState): Promise<void> {
    const gen = ++this.gen;
    this.el.dataset.state = 'loading';
    try {
      // Group totals carry no units: they follow from the profile type, except a sample count's
      // rate (its sampling frequency), which a tiny render response tells.
      const m = metaForType(s.profileType);
      const [g, meta] = await Promise.all([
        track(api.groupTotals(stateQuery(s), s.from, s.until, s.groupBy)),
        m.exact ? Promise.resolve(m) : track(api.render(stateQuery(s), s.from, s.until, 1)).then((p) => p.metadata, () => m),
      ]);
      if (gen !== this.gen) return;
      this.render(s, g, valueUnit(meta, s.profileType));
      this.el.dataset.state = 'ready';
      debug.renders++;
    } catch (e) {
      if (gen !== this.gen) return;
      this.el.dataset.state = 'error';
      this.content.replaceChildren(errorBox(`Failed to load groups: ${(e as Error).message}`));
    }
  }

  private render(s: AppState, g: GroupTotals, unit: ValueUnit): void {
    const empty = { startTime: parseTime(s.from), samples: [] as number[], durationDelta: 10 };
    const groups = (g.groups ?? []).map((x) => ({ ...x, timeline: x.timeline ?? empty })).sort((a, b) => b.total - a.total);
    const color = (i: number) => SERIES[i % SERIES.length];
    const label = (v: string) => (v === '' ? '(no value)' : v);
    this.timeline.setData(groups.map((gr, i) => ({ label: label(gr.value), timeline: gr.timeline, color: color(i) })), [parseTime(s.from), parseTime(s.until)], [], unit);
    const max = Math.max(1, ...groups.map((x) => x.total));
    const filter = (v: string) => {
      const matchers = s.matchers.filter((m) => m.name !== s.groupBy);
      if (v !== '') matchers.push({ name: s.groupBy, op: '=', value: v });
      navigate({ view: 'single', matchers, focus: '' });
    };
    const bars = h('div', { class: 'bars', testid: 'explore-bars' },
      ...groups.map((gr, i) =>
        h('div', { class: 'bar-row', onclick: () => filter(gr.value), title: `Show the flame graph for ${s.groupBy}="${gr.value}"` },
          h('span', { class: 'bar-label mono' }, label(gr.value)),
          h('span', { class: 'bar-track' }, h('span', { class: 'bar', style: `width:${(100 * gr.total) / max}%;background:${color(i)}` })),
          h('span', { class: 'bar-pct' }, pct(gr.total, g.total)),
        ),
      ),
    );
    const tbody = h('tbody', {});
    groups.forEach((gr, i) => {
      const pts = gr.timeline.samples.length ? gr.timeline.samples : [0];
      const f = timelineFactor(unit, gr.timeline.durationDelta);
      const avg = (f * pts.reduce((a, b) => a + b, 0)) / pts.length;
      const tr = h('tr', { testid: 'explore-row', class: 'clickable', onclick: () => filter(gr.value) },
        h('td', { class: 'mono' }, h('span', { class: 'dot', style: `background:${color(i)}` }), label(gr.value)),
        h('td', { class: 'num', title: gr.total.toLocaleString() }, formatAmount(gr.total, unit)),
        h('td', { class: 'num' }, pct(gr.total, g.total)),
        h('td', { class: 'num' }, formatRate(avg, unit)),
        h('td', { class: 'num' }, formatRate(f * Math.max(...pts), unit)),
        h('td', { class: 'spark-cell' }, sparkline(gr.timeline.samples, color(i))),
      );
      tr.dataset.value = gr.value;
      tbody.append(tr);
    });
    this.content.replaceChildren(
      h('div', { class: 'explore-grid' },
        h('div', { class: 'card' }, h('h3', {}, `Share of ${unit.kind === 'cpu' ? 'CPU' : 'total'} by ${s.groupBy}`), bars),
        h('div', { class: 'card' },
          h('h3', {}, `${s.groupBy} values`),
          h('table', { class: 'data-table', testid: 'explore-table' },
            h('thead', {}, h('tr', {}, h('th', {}, s.groupBy), h('th', { class: 'num' }, unit.kind === 'cpu' ? 'CPU time' : 'Total'), h('th', { class: 'num' }, '%'), h('th', { class: 'num', title: axisCaption(unit) }, 'Average'), h('th', { class: 'num', title: axisCaption(unit) }, 'Peak'), h('th', {}, 'Timeline'))),
            tbody),
          h('div', { class: 'muted small' }, 'Click a value to open the single view filtered by it.'),
        ),
      ),
    );
  }
}

/** A small inline SVG line of one value's own timeline. */
function sparkline(samples: number[], color: string): SVGSVGElement {
  const W = 160;
  const H = 26;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', String(W));
  svg.setAttribute('height', String(H));
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.classList.add('sparkline');
  const max = Math.max(1, ...samples);
  const n = Math.max(1, samples.length - 1);
  const pts = samples.map((v, i) => `${((i / n) * W).toFixed(1)},${(H - 2 - (v / max) * (H - 4)).toFixed(1)}`).join(' ');
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', pts);
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', color);
  line.setAttribute('stroke-width', '1.3');
  svg.append(line);
  return svg;
}

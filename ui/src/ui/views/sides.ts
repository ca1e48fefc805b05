// Left/right side pickers shared by the comparison and diff views: each side has its own
// time range (drag on its timeline) and optional extra selector.
import { api } from '../../lib/api';
import { parseSelector, SelectorError } from '../../lib/selector';
import { fmtDate, parseTime, shiftRange, splitRange } from '../../lib/timerange';
import { stateQuery, type AppState } from '../../lib/urlstate';
import { h } from '../dom';
import { navigate } from '../store';
import { TimelineChart } from '../timeline';
import { track } from '../track';
import { valueUnit } from '../../lib/units';

export type Side = 'left' | 'right';

export interface SideRange {
  query: string;
  from: string;
  until: string;
}

const COLORS: Record<Side, string> = { left: 'rgba(37,99,235,0.18)', right: 'rgba(234,88,12,0.18)' };

/** Resolve each side's query and range from the state (defaults: first / second half of the range). */
export function sideRanges(s: AppState): Record<Side, SideRange> {
  const [a, b] = splitRange(s.from, s.until);
  const extra = (sel: string) => {
    try {
      return parseSelector(sel);
    } catch {
      return [];
    }
  };
  return {
    left: { query: stateQuery(s, extra(s.leftSelector)), from: s.leftFrom || a.from, until: s.leftUntil || a.until },
    right: { query: stateQuery(s, extra(s.rightSelector)), from: s.rightFrom || b.from, until: s.rightUntil || b.until },
  };
}

export class SidePicker {
  readonly el: HTMLElement;
  private timeline: TimelineChart;
  private sel: HTMLInputElement;
  private err: HTMLElement;
  private rangeText: HTMLElement;
  private key = '';
  private gen = 0;

  constructor(private side: Side, extra: HTMLElement | null = null) {
    const L = side === 'left';
    this.timeline = new TimelineChart({
      height: 110,
      testid: `timeline-${side}`,
      onSelect: (f, u) => navigate(L ? { leftFrom: String(f), leftUntil: String(u) } : { rightFrom: String(f), rightUntil: String(u) }),
    });
    this.sel = h('input', {
      type: 'text',
      class: 'mono selector-input',
      testid: `selector-${side}`,
      placeholder: 'extra labels, e.g. {region="us-west-1"}',
      spellcheck: 'false',
      onkeydown: (e: Event) => { if ((e as KeyboardEvent).key === 'Enter') this.apply(); },
      onchange: () => this.apply(),
    });
    this.err = h('div', { class: 'sel-error' });
    this.rangeText = h('span', { class: 'muted small mono', testid: `range-${side}` });
    this.el = h('div', { class: `card side side-${side}` },
      h('div', { class: 'side-head' },
        h('span', { class: `side-badge ${side}` }, L ? 'Baseline (left)' : 'Comparison (right)'),
        this.rangeText,
        extra,
      ),
      h('div', { class: 'row' }, this.sel),
      this.err,
      this.timeline.el,
    );
  }

  destroy(): void {
    this.timeline.destroy();
  }

  private apply(): void {
    try {
      const v = this.sel.value.trim();
      if (v) parseSelector(v);
      this.err.textContent = '';
      navigate(this.side === 'left' ? { leftSelector: v } : { rightSelector: v });
    } catch (e) {
      if (e instanceof SelectorError) this.err.textContent = e.message;
    }
  }

  update(s: AppState): void {
    const r = sideRanges(s)[this.side];
    if (document.activeElement !== this.sel) this.sel.value = this.side === 'left' ? s.leftSelector : s.rightSelector;
    const f = parseTime(r.from);
    const u = parseTime(r.until);
    this.rangeText.textContent = `${fmtDate(f)} → ${fmtDate(u)}`;
    // The timeline shows the main range, widened to include this side's range.
    const cf = Math.min(parseTime(s.from), f);
    const cu = Math.max(parseTime(s.until), u);
    const key = `${r.query}|${cf}|${cu}`;
    const hl = [{ from: f, until: u, color: COLORS[this.side] }];
    if (key === this.key) {
      this.timeline.setHighlights(hl);
      return;
    }
    this.key = key;
    const gen = ++this.gen;
    track(api.render(r.query, String(cf), String(cu), 16))
      .then((p) => {
        if (gen === this.gen) this.timeline.setData(p.timeline ? [{ label: this.side, timeline: p.timeline, color: this.side === 'left' ? '#2563eb' : '#ea580c' }] : [], [cf, cu], hl, valueUnit(p.metadata, s.profileType));
      })
      .catch(() => { /* the flame graph request reports errors */ });
  }
}

/** Buttons that set the left range relative to the right one. */
export function comparePresets(s: () => AppState): HTMLElement {
  const set = (delta: number) => {
    const r = sideRanges(s()).right;
    const l = shiftRange(r.from, r.until, delta);
    navigate({ leftFrom: l.from, leftUntil: l.until, rightFrom: r.from, rightUntil: r.until });
  };
  return h('div', { class: 'presets', testid: 'compare-presets' },
    h('span', { class: 'muted small' }, 'Baseline presets: '),
    h('button', { class: 'btn small', testid: 'preset-halves', onclick: () => navigate({ leftFrom: '', leftUntil: '', rightFrom: '', rightUntil: '' }) }, 'First half vs second half'),
    h('button', { class: 'btn small', testid: 'preset-hour', onclick: () => set(-3600) }, 'Same range 1 hour earlier'),
    h('button', { class: 'btn small', testid: 'preset-day', onclick: () => set(-86400) }, 'Same range 1 day earlier'),
    h('button', { class: 'btn small', testid: 'preset-week', onclick: () => set(-7 * 86400) }, '1 week earlier'),
  );
}

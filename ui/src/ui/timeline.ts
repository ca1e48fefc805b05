// Timeline chart (uPlot): one or more series, drag to select a time range, highlighted ranges.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Timeline } from '../lib/flamebearer';
import { SERIES } from '../lib/colors';
import { fmtDate } from '../lib/timerange';
import { axisCaption, axisTicks, axisWidth, pointLines, timelineFactor, valueUnit, type ValueUnit } from '../lib/units';
import { alignTimelines } from './timeline-align';

const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
let measureCtx: CanvasRenderingContext2D | null = null;
function measure(s: string): number {
  measureCtx ??= document.createElement('canvas').getContext('2d');
  if (!measureCtx) return s.length * 7;
  measureCtx.font = AXIS_FONT;
  return measureCtx.measureText(s).width;
}

export interface Series {
  label: string;
  timeline: Timeline;
  color?: string;
}

export interface Highlight {
  from: number;
  until: number;
  color: string;
}

export class TimelineChart {
  readonly el: HTMLDivElement;
  private plot: uPlot | null = null;
  private series: Series[] = [];
  private highlights: Highlight[] = [];
  private range: [number, number] | null = null;
  private unit: ValueUnit = valueUnit({});
  private ro: ResizeObserver;
  private caption: HTMLDivElement;
  private tip: HTMLDivElement;
  private chart: HTMLDivElement;

  constructor(private opts: { height?: number; onSelect?: (from: number, until: number) => void; testid?: string; fill?: boolean }) {
    this.el = document.createElement('div');
    this.el.className = 'timeline';
    if (opts.testid) this.el.dataset.testid = opts.testid;
    this.caption = document.createElement('div');
    this.caption.className = 'tl-caption';
    this.caption.dataset.testid = 'timeline-unit';
    this.chart = document.createElement('div');
    this.tip = document.createElement('div');
    this.tip.className = 'tl-tip';
    this.tip.hidden = true;
    this.el.append(this.caption, this.chart, this.tip);
    this.ro = new ResizeObserver(() => {
      if (this.plot && this.el.clientWidth && Math.abs(this.plot.width - this.el.clientWidth) > 1) {
        this.plot.setSize({ width: this.el.clientWidth, height: this.opts.height ?? 120 });
      }
    });
    this.ro.observe(this.el);
  }

  destroy(): void {
    this.ro.disconnect();
    this.plot?.destroy();
    this.el.remove();
  }

  /** `range` pins the x axis to the queried range (unix seconds); `unit` says what values mean. */
  setData(series: Series[], range: [number, number] | null, highlights: Highlight[] = [], unit?: ValueUnit): void {
    this.series = series;
    if (unit) this.unit = unit;
    this.range = range;
    this.highlights = highlights;
    this.build();
  }

  setHighlights(h: Highlight[]): void {
    this.highlights = h;
    this.plot?.redraw(false);
  }

  private build(): void {
    this.plot?.destroy();
    this.plot = null;
    const raw = alignTimelines(this.series.map((s) => s.timeline));
    const unit = this.unit;
    const steps = this.series.map((s) => s.timeline.durationDelta || 10);
    // Plot rates (CPU cores) so that uPlot picks round ticks in the displayed unit.
    const data = [raw[0], ...raw.slice(1).map((ys, i) => { const f = timelineFactor(unit, steps[i]); return ys.map((v) => (v == null ? null : v * f)); })];
    this.caption.textContent = this.series.length ? axisCaption(unit) : '';
    this.tip.hidden = true;
    const highlights = () => this.highlights;
    const fill = this.opts.fill ?? this.series.length === 1;
    const opts: uPlot.Options = {
      width: this.el.clientWidth || 800,
      height: this.opts.height ?? 120,
      legend: { show: this.series.length > 1, live: false },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      select: { show: true, left: 0, top: 0, width: 0, height: 0 },
      scales: { x: { time: true, range: this.range ? () => this.range! : undefined }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        // Wider tick spacing than uPlot's 50 px keeps the date row ("11/27/26 6:48am") clear of the next label.
        { stroke: '#6b7280', grid: { stroke: '#f1f5f9' }, ticks: { stroke: '#e5e7eb' }, space: 80 },
        {
          stroke: '#6b7280',
          font: AXIS_FONT,
          grid: { stroke: '#f1f5f9' },
          ticks: { stroke: '#e5e7eb', size: 6 },
          gap: 4,
          space: (this.opts.height ?? 120) < 120 ? 18 : 30,
          values: (_u, splits, _ax, _space, incr) => axisTicks(splits, unit, incr),
          size: (_u, values) => axisWidth(values ?? [], measure, 6, 4),
        },
      ],
      series: [
        {},
        ...this.series.map((s, i) => {
          const color = s.color ?? SERIES[i % SERIES.length];
          return {
            label: s.label,
            stroke: color,
            width: 1.5,
            fill: fill ? color + '33' : undefined,
            points: { show: false },
            // Null only where another series has a point between two of this one's steps.
            spanGaps: true,
          } as uPlot.Series;
        }),
      ],
      hooks: {
        drawClear: [
          (u: uPlot) => {
            const ctx = u.ctx;
            for (const h of highlights()) {
              const l = u.valToPos(h.from, 'x', true);
              const r = u.valToPos(h.until, 'x', true);
              ctx.fillStyle = h.color;
              ctx.fillRect(Math.min(l, r), u.bbox.top, Math.abs(r - l), u.bbox.height);
            }
          },
        ],
        setCursor: [(u: uPlot) => this.showTip(u, raw, steps)],
        setSelect: [
          (u: uPlot) => {
            if (u.select.width < 2) return;
            const from = Math.floor(u.posToVal(u.select.left, 'x'));
            const until = Math.ceil(u.posToVal(u.select.left + u.select.width, 'x'));
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            this.opts.onSelect?.(from, until);
          },
        ],
      },
    };
    this.plot = new uPlot(opts, data as uPlot.AlignedData, this.chart);
  }

  private showTip(u: uPlot, raw: ReturnType<typeof alignTimelines>, steps: number[]): void {
    const i = u.cursor.idx;
    const left = u.cursor.left ?? -1;
    if (i == null || left < 0 || !this.series.length || u.select.width > 0) {
      this.tip.hidden = true;
      return;
    }
    const lines = this.series.flatMap((s, k) => {
      const v = raw[k + 1][i];
      return v == null ? [] : pointLines([{ label: s.label, raw: v }], this.unit, steps[k]);
    });
    const head = document.createElement('div');
    head.className = 'tl-tip-time';
    head.textContent = fmtDate(raw[0][i]);
    this.tip.replaceChildren(head, ...lines.map((l) => { const d = document.createElement('div'); d.textContent = l; return d; }));
    this.tip.hidden = false;
    const x = u.over.offsetLeft + left;
    const w = this.tip.offsetWidth;
    this.tip.style.left = `${x + 12 + w > this.el.clientWidth ? Math.max(0, x - 12 - w) : x + 12}px`;
    this.tip.style.top = `${u.over.offsetTop + 4 + this.caption.offsetHeight}px`;
  }
}

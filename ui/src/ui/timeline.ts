// Timeline chart (uPlot): one or more series, drag to select a time range, highlighted ranges.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Timeline } from '../lib/flamebearer';
import { SERIES } from '../lib/colors';
import { alignTimelines } from './timeline-align';

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
  private ro: ResizeObserver;

  constructor(private opts: { height?: number; onSelect?: (from: number, until: number) => void; testid?: string; fill?: boolean }) {
    this.el = document.createElement('div');
    this.el.className = 'timeline';
    if (opts.testid) this.el.dataset.testid = opts.testid;
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

  /** `range` pins the x axis to the queried range (unix seconds). */
  setData(series: Series[], range: [number, number] | null, highlights: Highlight[] = []): void {
    this.series = series;
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
    const data = alignTimelines(this.series.map((s) => s.timeline));
    const highlights = () => this.highlights;
    const fill = this.opts.fill ?? this.series.length === 1;
    const opts: uPlot.Options = {
      width: this.el.clientWidth || 800,
      height: this.opts.height ?? 120,
      legend: { show: this.series.length > 1 },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      select: { show: true, left: 0, top: 0, width: 0, height: 0 },
      scales: { x: { time: true, range: this.range ? () => this.range! : undefined }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: '#6b7280', grid: { stroke: '#f1f5f9' }, ticks: { stroke: '#e5e7eb' } },
        { stroke: '#6b7280', grid: { stroke: '#f1f5f9' }, ticks: { stroke: '#e5e7eb' }, size: 50 },
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
    this.plot = new uPlot(opts, data as uPlot.AlignedData, this.el);
  }
}

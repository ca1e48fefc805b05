// Canvas flame graph: single and diff (double) profiles, click to zoom (animated), search highlight,
// tooltip, inverted mode (sandwich callers), PNG/SVG export and a debug listing of drawn nodes.
import { diffClass, diffColor, diffPercent, layoutDiff, type DiffMode } from '../lib/diff';
import { formatValue, pct, type FlameData, type FlameNode } from '../lib/flamebearer';
import { valueUnit } from '../lib/units';
import { FADED, nameColor } from '../lib/colors';
import { registerGraph, unregisterGraph, type RenderedNode } from './debug';

export interface FlameGraphOptions {
  id: string;
  inverted?: boolean;
  onFocusChange?: (path: string) => void;
  onFunctionMenu?: (name: string, ev: MouseEvent) => void;
}

const ROW = 20;
const FONT_PX = 12;
const FONT = `${FONT_PX}px ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace`;

export class FlameGraph {
  readonly el: HTMLDivElement;
  private canvas: HTMLCanvasElement;
  private tip: HTMLDivElement;
  private raw: FlameData | null = null;
  private data: FlameData | null = null;
  private diffMode: DiffMode = 'normalized';
  private search = '';
  private focus: FlameNode | null = null;
  private view = { x0: 0, x1: 1 };
  private anim = 0;
  private hover: FlameNode | null = null;
  private charW = 7.2;
  private width = 0;
  private rendered: RenderedNode[] = [];
  private ro: ResizeObserver;
  lastRenderMs = 0;

  constructor(private opts: FlameGraphOptions) {
    this.el = document.createElement('div');
    this.el.className = 'flamegraph';
    this.el.dataset.testid = `flamegraph-${opts.id}`;
    this.canvas = document.createElement('canvas');
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', 'flame graph');
    this.tip = document.createElement('div');
    this.tip.className = 'fg-tooltip';
    this.tip.hidden = true;
    this.el.append(this.canvas, this.tip);
    this.canvas.addEventListener('mousemove', (e) => this.onMove(e));
    this.canvas.addEventListener('mouseleave', () => { this.hover = null; this.tip.hidden = true; this.draw(); });
    this.canvas.addEventListener('click', (e) => this.onClick(e));
    this.canvas.addEventListener('contextmenu', (e) => {
      const n = this.nodeAt(e);
      if (n && this.opts.onFunctionMenu && this.data) {
        e.preventDefault();
        this.opts.onFunctionMenu(this.data.names[n.name], e);
      }
    });
    this.ro = new ResizeObserver(() => {
      const w = this.el.clientWidth;
      if (w && w !== this.width) this.draw();
    });
    this.ro.observe(this.el);
    registerGraph(opts.id, this);
  }

  destroy(): void {
    this.ro.disconnect();
    cancelAnimationFrame(this.anim);
    unregisterGraph(this.opts.id, this);
    this.el.remove();
  }

  setData(data: FlameData | null, focusPath = ''): void {
    this.raw = data;
    this.data = data ? layoutDiff(data, this.diffMode) : null;
    this.focus = null;
    if (focusPath) this.focus = this.findPath(focusPath);
    this.setView();
    this.draw();
  }

  setDiffMode(m: DiffMode): void {
    if (m === this.diffMode) return;
    this.diffMode = m;
    const path = this.focusPath();
    this.setData(this.raw, path);
  }

  setSearch(q: string): void {
    this.search = q.trim().toLowerCase();
    this.draw();
  }

  reset(): void {
    this.zoomTo(null);
  }

  get names(): string[] {
    return this.data?.names ?? [];
  }

  /** The stack of the zoomed node as `a;b;c` (empty when not zoomed). */
  focusPath(): string {
    if (!this.focus || !this.data) return '';
    const out: string[] = [];
    let n: FlameNode | null = this.focus;
    while (n && n.level > 0) {
      out.unshift(this.data.names[n.name]);
      n = this.parentOf(n);
    }
    return out.join(';');
  }

  setFocusPath(path: string): void {
    const n = path ? this.findPath(path) : null;
    if (n === this.focus) return;
    this.zoomTo(n, false);
  }

  /** Nodes drawn in the last frame (for tests: names, colors, diff classes). */
  renderedNodes(): RenderedNode[] {
    return this.rendered;
  }

  private parentOf(n: FlameNode): FlameNode | null {
    if (!this.data || n.level === 0) return null;
    const lvl = this.data.levels[n.level - 1];
    return lvl[this.findIndex(lvl, n.x)] ?? null;
  }

  /** Index of the node containing tick x in a level (binary search), or -1. */
  private findIndex(lvl: FlameNode[], x: number): number {
    let lo = 0;
    let hi = lvl.length - 1;
    while (lo <= hi) {
      const m = (lo + hi) >> 1;
      const n = lvl[m];
      if (x < n.x) hi = m - 1;
      else if (x >= n.x + n.total) lo = m + 1;
      else return m;
    }
    return -1;
  }

  private findPath(path: string): FlameNode | null {
    if (!this.data) return null;
    const parts = path.split(';');
    let parent = this.data.levels[0]?.[0];
    if (!parent) return null;
    for (let d = 0; d < parts.length; d++) {
      const lvl = this.data.levels[d + 1];
      if (!lvl) return null;
      const p: FlameNode = parent;
      const child = lvl.find((n) => n.x >= p.x && n.x < p.x + p.total && this.data!.names[n.name] === parts[d]);
      if (!child) return null;
      parent = child;
    }
    return parent;
  }

  private setView(): void {
    if (!this.data) return;
    const f = this.focus;
    this.view = f ? { x0: f.x, x1: f.x + f.total } : { x0: 0, x1: this.data.numTicks || 1 };
  }

  private zoomTo(n: FlameNode | null, notify = true): void {
    if (!this.data) return;
    const from = { ...this.view };
    this.focus = n && n.level > 0 ? n : null;
    this.setView();
    const to = { ...this.view };
    if (notify) this.opts.onFocusChange?.(this.focusPath());
    cancelAnimationFrame(this.anim);
    const t0 = performance.now();
    const DUR = 180;
    const step = () => {
      const t = Math.min(1, (performance.now() - t0) / DUR);
      const e = 1 - (1 - t) * (1 - t);
      this.view = { x0: from.x0 + (to.x0 - from.x0) * e, x1: from.x1 + (to.x1 - from.x1) * e };
      this.draw();
      if (t < 1) this.anim = requestAnimationFrame(step);
    };
    step();
  }

  private colorOf(n: FlameNode, name: string): string {
    const d = this.data!;
    if (d.format === 'double') {
      const c = diffColor(diffPercent(n, d.leftTicks, d.rightTicks, this.diffMode));
      if (this.search && !name.toLowerCase().includes(this.search)) return FADED;
      return c;
    }
    if (this.search) return name.toLowerCase().includes(this.search) ? '#d946ef' : FADED;
    return nameColor(name);
  }

  private yOf(level: number, levels: number): number {
    return this.opts.inverted ? (levels - 1 - level) * ROW : level * ROW;
  }

  draw(): void {
    const t0 = performance.now();
    const ctx = this.canvas.getContext('2d');
    const width = this.el.clientWidth || 800;
    this.width = width;
    if (!ctx) return;
    const data = this.data;
    const levels = data ? data.levels.length : 0;
    const height = Math.max(ROW, levels * ROW);
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
      this.canvas.style.width = `${width}px`;
      this.canvas.style.height = `${height}px`;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    this.rendered = [];
    if (!data || levels === 0) {
      this.lastRenderMs = performance.now() - t0;
      return;
    }
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    this.charW = ctx.measureText('M').width || this.charW;
    const { x0, x1 } = this.view;
    const scale = width / (x1 - x0 || 1);
    const focusLevel = this.focus?.level ?? 0;
    const fx = this.focus ? this.focus.x : 0;
    const diff = data.format === 'double';
    const out = this.rendered;
    for (let d = 0; d < levels; d++) {
      const lvl = data.levels[d];
      const y = this.yOf(d, levels);
      // Skip straight to the first node that may be visible.
      let i = d < focusLevel ? this.findIndex(lvl, fx) : this.lowerBound(lvl, x0);
      if (i < 0) continue;
      for (; i < lvl.length; i++) {
        const n = lvl[i];
        let px: number;
        let pw: number;
        if (d < focusLevel) {
          // Ancestors of the zoomed node span the full width.
          px = 0;
          pw = width;
        } else {
          if (n.x >= x1) break;
          px = (n.x - x0) * scale;
          pw = n.total * scale;
          if (px + pw <= 0) continue;
          if (pw < 0.6) continue;
        }
        const name = data.names[n.name] ?? '?';
        const color = this.colorOf(n, name);
        ctx.fillStyle = color;
        const gx = Math.max(px, 0);
        const gw = Math.min(px + pw, width) - gx;
        ctx.fillRect(gx, y, Math.max(gw - (gw > 2 ? 1 : 0), 0.6), ROW - 1);
        if (n === this.hover) {
          ctx.strokeStyle = '#111827';
          ctx.lineWidth = 1.5;
          ctx.strokeRect(gx + 0.75, y + 0.75, Math.max(gw - 2.5, 0), ROW - 2.5);
        }
        if (gw > this.charW * 3 + 6) {
          const maxChars = Math.floor((gw - 6) / this.charW);
          const label = name.length > maxChars ? name.slice(0, Math.max(maxChars - 1, 1)) + '…' : name;
          ctx.fillStyle = '#111827';
          ctx.fillText(label, gx + 3, y + ROW / 2);
        }
        const r: RenderedNode = { name, level: d, x: gx, width: gw, color, total: n.total, self: n.self };
        if (diff) {
          const p = diffPercent(n, data.leftTicks, data.rightTicks, this.diffMode);
          r.diffPercent = p;
          r.diffClass = diffClass(p);
          r.leftTotal = n.lt;
          r.rightTotal = n.rt;
        }
        out.push(r);
        if (d < focusLevel) break;
      }
    }
    this.lastRenderMs = performance.now() - t0;
    this.el.dataset.nodes = String(out.length);
  }

  /** First node index whose end is beyond x. */
  private lowerBound(lvl: FlameNode[], x: number): number {
    let lo = 0;
    let hi = lvl.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (lvl[m].x + lvl[m].total <= x) lo = m + 1;
      else hi = m;
    }
    return lo < lvl.length ? lo : -1;
  }

  private nodeAt(e: MouseEvent): FlameNode | null {
    const data = this.data;
    if (!data) return null;
    const rect = this.canvas.getBoundingClientRect();
    const mx = e.clientX - rect.left;
    const my = e.clientY - rect.top;
    const levels = data.levels.length;
    const row = Math.floor(my / ROW);
    const level = this.opts.inverted ? levels - 1 - row : row;
    if (level < 0 || level >= levels) return null;
    const lvl = data.levels[level];
    const focusLevel = this.focus?.level ?? 0;
    if (level < focusLevel) {
      const i = this.findIndex(lvl, this.focus!.x);
      return i >= 0 ? lvl[i] : null;
    }
    const { x0, x1 } = this.view;
    const x = x0 + (mx / this.width) * (x1 - x0);
    const i = this.findIndex(lvl, x);
    return i >= 0 ? lvl[i] : null;
  }

  private onMove(e: MouseEvent): void {
    const n = this.nodeAt(e);
    if (n !== this.hover) {
      this.hover = n;
      this.draw();
    }
    if (!n || !this.data) {
      this.tip.hidden = true;
      return;
    }
    this.tip.replaceChildren(...this.tooltipContent(n));
    this.tip.hidden = false;
    const rect = this.el.getBoundingClientRect();
    let left = e.clientX - rect.left + 14;
    const tw = this.tip.offsetWidth;
    if (left + tw > rect.width) left = Math.max(0, e.clientX - rect.left - tw - 14);
    this.tip.style.left = `${left}px`;
    this.tip.style.top = `${e.clientY - rect.top + 16}px`;
  }

  private tooltipContent(n: FlameNode): HTMLElement[] {
    const d = this.data!;
    const name = d.names[n.name];
    const title = document.createElement('div');
    title.className = 'fg-tip-name';
    title.textContent = name;
    const table = document.createElement('table');
    const row = (...cells: string[]) => {
      const tr = document.createElement('tr');
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = c;
        tr.append(td);
      }
      table.append(tr);
    };
    if (d.format === 'double') {
      const p = diffPercent(n, d.leftTicks, d.rightTicks, this.diffMode);
      row('', 'Left (baseline)', 'Right (comparison)');
      row('Total', `${formatValue(n.lt, d)} (${pct(n.lt, d.leftTicks)})`, `${formatValue(n.rt, d)} (${pct(n.rt, d.rightTicks)})`);
      row('Self', `${formatValue(n.ls, d)} (${pct(n.ls, d.leftTicks)})`, `${formatValue(n.rs, d)} (${pct(n.rs, d.rightTicks)})`);
      const change = document.createElement('div');
      change.className = `fg-tip-diff ${diffClass(p)}`;
      change.textContent = Number.isFinite(p)
        ? `${p > 0 ? '+' : ''}${p.toFixed(1)}% ${this.diffMode === 'normalized' ? '(share of total)' : '(absolute)'}`
        : 'new in right';
      const hint = document.createElement('div');
      hint.className = 'fg-tip-hint';
      hint.textContent = 'Click to zoom';
      return [title, table, change, hint];
    }
    const root = d.levels[0][0].total || 1;
    const counts = valueUnit(d).sampleCount;
    const n_ = (v: number) => (counts ? `${v.toLocaleString()} samples` : '');
    row('Total', formatValue(n.total, d), pct(n.total, root), n_(n.total));
    row('Self', formatValue(n.self, d), pct(n.self, root), n_(n.self));
    const hint = document.createElement('div');
    hint.className = 'fg-tip-hint';
    hint.textContent = this.opts.onFunctionMenu ? 'Click to zoom · right-click for sandwich view' : 'Click to zoom';
    return [title, table, hint];
  }

  private onClick(e: MouseEvent): void {
    const n = this.nodeAt(e);
    if (!n) return;
    if (n === this.focus || n.level === 0) this.zoomTo(n.level === 0 ? null : this.parentOf(n));
    else this.zoomTo(n);
  }

  /** PNG of the current canvas. */
  toPNG(): Promise<Blob | null> {
    return new Promise((res) => this.canvas.toBlob((b) => res(b), 'image/png'));
  }

  /** SVG of what is currently drawn. */
  toSVG(): string {
    const w = this.width || 800;
    const levels = this.data?.levels.length ?? 0;
    const h = Math.max(ROW, levels * ROW);
    const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
    const parts = [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="ui-monospace, DejaVu Sans Mono, monospace" font-size="${FONT_PX}">`,
    ];
    for (const r of this.rendered) {
      const y = this.yOf(r.level, levels);
      const rw = Math.max(r.width - (r.width > 2 ? 1 : 0), 0.6);
      parts.push(`<g><title>${esc(r.name)} (${r.total})</title><rect x="${r.x.toFixed(2)}" y="${y}" width="${rw.toFixed(2)}" height="${ROW - 1}" fill="${r.color}"/>`);
      if (r.width > this.charW * 3 + 6) {
        const maxChars = Math.floor((r.width - 6) / this.charW);
        const label = r.name.length > maxChars ? r.name.slice(0, Math.max(maxChars - 1, 1)) + '…' : r.name;
        parts.push(`<text x="${(r.x + 3).toFixed(2)}" y="${y + ROW / 2 + 4}" fill="#111827">${esc(label)}</text>`);
      }
      parts.push('</g>');
    }
    parts.push('</svg>');
    return parts.join('\n');
  }
}

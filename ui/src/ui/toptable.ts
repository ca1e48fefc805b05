// Top table: function, self, total (sortable, searchable). Diff-aware.
import { filterRows, sortRows, type SortKey, type TopRow } from '../lib/analysis';
import { formatValue, pct, type FlameData } from '../lib/flamebearer';
import { h } from './dom';

const MAX_ROWS = 500;

export interface TopTableOptions {
  onSort: (key: SortKey, desc: boolean) => void;
  onRowClick: (name: string) => void;
  onSandwich?: (name: string) => void;
}

export class TopTable {
  readonly el: HTMLDivElement;
  constructor(private opts: TopTableOptions) {
    this.el = h('div', { class: 'top-table', testid: 'top-table' });
  }

  render(rows: TopRow[], data: FlameData, sort: SortKey, desc: boolean, search: string, selected: string): void {
    const total = data.levels[0]?.[0]?.total ?? 0;
    const shown = sortRows(filterRows(rows, search), sort, desc);
    const th = (key: SortKey, label: string) =>
      h('th', {
        class: `sortable${sort === key ? ' sorted' : ''}${key !== 'name' ? ' num' : ''}`,
        testid: `sort-${key}`,
        onclick: () => this.opts.onSort(key, sort === key ? !desc : key !== 'name'),
      }, label, sort === key ? (desc ? ' ▼' : ' ▲') : '');
    const tbody = h('tbody', {});
    for (const r of shown.slice(0, MAX_ROWS)) {
      const tr = h('tr', { testid: 'top-row', class: r.name === selected ? 'selected' : '', onclick: () => this.opts.onRowClick(r.name) },
        h('td', { class: 'mono fn', title: r.name },
          h('span', { class: 'swatch', style: '' }),
          r.name,
          this.opts.onSandwich
            ? h('button', { class: 'row-action', title: 'Sandwich view', testid: 'row-sandwich', onclick: (e: Event) => { e.stopPropagation(); this.opts.onSandwich!(r.name); } }, '⇅')
            : null),
        h('td', { class: 'num' }, formatValue(r.self, data), h('span', { class: 'pct' }, pct(r.self, total))),
        h('td', { class: 'num' }, formatValue(r.total, data), h('span', { class: 'pct' }, pct(r.total, total))),
      );
      tr.dataset.name = r.name;
      tbody.append(tr);
    }
    const more = shown.length > MAX_ROWS ? h('div', { class: 'muted small' }, `Showing ${MAX_ROWS} of ${shown.length} functions; use search to narrow.`) : null;
    const empty = shown.length === 0 ? h('div', { class: 'muted small pad' }, search ? 'No function matches the search.' : 'No data.') : null;
    this.el.replaceChildren(
      h('table', {}, h('thead', {}, h('tr', {}, th('name', 'Symbol'), th('self', 'Self'), th('total', 'Total'))), tbody),
      more ?? '',
      empty ?? '',
    );
  }
}

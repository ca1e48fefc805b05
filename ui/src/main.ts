import './styles.css';
import type { AppState, View } from './lib/urlstate';
import { h } from './ui/dom';
import { QueryBar } from './ui/querybar';
import { getState, initUrl, navigate, subscribe } from './ui/store';
import { CompareView } from './ui/views/compare';
import { DiffView } from './ui/views/diff';
import { ExploreView } from './ui/views/explore';
import { SingleView } from './ui/views/single';

interface ViewImpl {
  el: HTMLElement;
  update(s: AppState): void;
  destroy(): void;
}

const VIEWS: { id: View; label: string; make: () => ViewImpl }[] = [
  { id: 'single', label: 'Single view', make: () => new SingleView() },
  { id: 'explore', label: 'Tag explorer', make: () => new ExploreView() },
  { id: 'compare', label: 'Comparison', make: () => new CompareView() },
  { id: 'diff', label: 'Diff', make: () => new DiffView() },
];

const queryBar = new QueryBar();
const tabs = new Map<View, HTMLAnchorElement>();
const nav = h('nav', { class: 'tabs' });
for (const v of VIEWS) {
  const a = h('a', {
    href: '#',
    testid: `tab-${v.id}`,
    onclick: (e: Event) => { e.preventDefault(); navigate({ view: v.id, focus: '' }); },
  }, v.label);
  tabs.set(v.id, a);
  nav.append(a);
}
const main = h('main', { class: 'content' });
document.getElementById('app')!.append(
  h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: './', title: 'Kiln — continuous profiling' },
      h('span', { class: 'logo', 'aria-hidden': 'true' }),
      'Kiln'),
    nav),
  queryBar.el,
  main,
);

let current: { id: View; impl: ViewImpl } | null = null;

function render(s: AppState): void {
  for (const [id, a] of tabs) a.classList.toggle('active', id === s.view);
  queryBar.update(s);
  if (!current || current.id !== s.view) {
    current?.impl.destroy();
    const def = VIEWS.find((v) => v.id === s.view)!;
    current = { id: s.view, impl: def.make() };
    main.replaceChildren(current.impl.el);
  }
  current.impl.update(s);
  document.title = 'Kiln';
}

initUrl();
subscribe((s) => render(s));
render(getState());

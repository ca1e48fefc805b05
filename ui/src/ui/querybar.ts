// Query bar: profile type, service, label selector (text + "select tags"), time range.
import { api } from '../lib/api';
import { completionContext, parseSelector, printMatchers, SelectorError, type Matcher } from '../lib/selector';
import { describeRange, fromLocalInput, isValidTime, parseTime, PRESETS, toLocalInput } from '../lib/timerange';
import { stateQuery, type AppState } from '../lib/urlstate';
import { h } from './dom';
import { getState, navigate } from './store';
import { track } from './track';

export class QueryBar {
  readonly el: HTMLElement;
  private profileSel: HTMLSelectElement;
  private serviceSel: HTMLSelectElement;
  private selInput: HTMLInputElement;
  private selError: HTMLElement;
  private acList: HTMLUListElement;
  private tagsPanel: HTMLElement;
  private rangeSel: HTMLSelectElement;
  private customBox: HTMLElement;
  private fromInput: HTMLInputElement;
  private untilInput: HTMLInputElement;
  private labelNames: string[] = [];
  private valuesCache = new Map<string, string[]>();
  private loadedKey = '';
  private acItems: { text: string; apply: () => void }[] = [];
  private acIndex = -1;

  constructor() {
    this.profileSel = h('select', { testid: 'profile-type', title: 'Profile type', onchange: () => navigate({ profileType: this.profileSel.value, focus: '' }) });
    this.serviceSel = h('select', { testid: 'service', title: 'Service (label service_name)', onchange: () => navigate({ service: this.serviceSel.value, focus: '', fn: '' }) });
    this.selInput = h('input', {
      type: 'text',
      class: 'mono selector-input',
      testid: 'selector',
      placeholder: '{region="us-west-1", vehicle!="car"}',
      spellcheck: 'false',
      autocomplete: 'off',
      oninput: () => this.onSelInput(),
      onkeydown: (e: Event) => this.onSelKey(e as KeyboardEvent),
      onfocus: () => this.onSelInput(),
      onblur: () => setTimeout(() => this.hideAc(), 150),
    });
    this.selError = h('div', { class: 'sel-error', testid: 'selector-error' });
    this.acList = h('ul', { class: 'autocomplete', hidden: true, testid: 'autocomplete' });
    this.tagsPanel = h('div', { class: 'tags-panel', hidden: true, testid: 'tags-panel' });
    const tagsBtn = h('button', { class: 'btn', testid: 'select-tags', onclick: () => this.toggleTags() }, 'Select tags ▾');
    this.rangeSel = h('select', { testid: 'range', title: 'Time range', onchange: () => this.onRange() });
    for (const p of PRESETS) this.rangeSel.append(h('option', { value: `${p.from}|${p.until}` }, p.label));
    this.rangeSel.append(h('option', { value: 'custom' }, 'Custom…'));
    this.fromInput = h('input', { type: 'datetime-local', testid: 'custom-from', title: 'From' });
    this.untilInput = h('input', { type: 'datetime-local', testid: 'custom-until', title: 'Until' });
    this.customBox = h('div', { class: 'custom-range', hidden: true },
      h('label', {}, 'From ', this.fromInput),
      h('label', {}, 'Until ', this.untilInput),
      h('button', { class: 'btn', onclick: () => this.applyCustom() }, 'Apply'),
    );
    this.el = h('div', { class: 'querybar', testid: 'querybar' },
      h('div', { class: 'qb-row' },
        h('label', { class: 'qb-field' }, h('span', {}, 'Service'), this.serviceSel),
        h('label', { class: 'qb-field' }, h('span', {}, 'Profile type'), this.profileSel),
        h('div', { class: 'qb-field qb-selector' }, h('span', {}, 'Labels'),
          h('div', { class: 'sel-wrap' }, this.selInput, this.acList, this.selError), tagsBtn, this.tagsPanel),
        h('label', { class: 'qb-field' }, h('span', {}, 'Range'), this.rangeSel),
        h('button', { class: 'btn primary', testid: 'execute', onclick: () => this.applySelector() }, 'Execute'),
      ),
      this.customBox,
    );
  }

  update(s: AppState): void {
    this.selInput.value = printMatchers(s.matchers);
    this.selError.textContent = '';
    const key = `${s.from}|${s.until}`;
    const preset = PRESETS.find((p) => `${p.from}|${p.until}` === key);
    if (preset) {
      this.rangeSel.value = key;
      this.customBox.hidden = true;
    } else {
      this.rangeSel.value = 'custom';
      try {
        this.fromInput.value = toLocalInput(parseTime(s.from));
        this.untilInput.value = toLocalInput(parseTime(s.until));
      } catch { /* ignore */ }
      this.customBox.hidden = false;
      this.rangeSel.title = describeRange(s.from, s.until);
    }
    this.loadOptions(s);
  }

  private async loadOptions(s: AppState): Promise<void> {
    const key = `${s.profileType}|${s.service}|${s.from}|${s.until}`;
    if (key === this.loadedKey) return;
    this.loadedKey = key;
    this.valuesCache.clear();
    try {
      const [types, services, names] = await Promise.all([
        track(api.profileTypes()),
        track(api.labelValues('service_name', `${s.profileType}{}`, s.from, s.until)),
        track(api.labelNames(stateQuery({ ...s, matchers: [] }), s.from, s.until)),
      ]);
      fill(this.profileSel, types.includes(s.profileType) ? types : [s.profileType, ...types], s.profileType);
      const svc = s.service && !services.includes(s.service) ? [s.service, ...services] : services;
      fill(this.serviceSel, svc, s.service, '(all services)');
      this.labelNames = names.filter((n) => n !== 'service_name' && !n.startsWith('__'));
      // No service picked yet: pick the first one so the page shows data right away.
      if (!s.service && services.length && getState().service === '') navigate({ service: services[0] }, { replace: true });
    } catch (e) {
      this.selError.textContent = `Could not load labels: ${(e as Error).message}`;
    }
  }

  private async values(label: string): Promise<string[]> {
    const cached = this.valuesCache.get(label);
    if (cached) return cached;
    const s = getState();
    const v = await track(api.labelValues(label, stateQuery({ ...s, matchers: [] }), s.from, s.until));
    this.valuesCache.set(label, v);
    return v;
  }

  private applySelector(): void {
    try {
      const ms = parseSelector(this.selInput.value);
      const svc = ms.find((m) => m.name === 'service_name' && m.op === '=');
      navigate({ matchers: ms.filter((m) => m !== svc), ...(svc ? { service: svc.value } : {}), focus: '' });
      this.selError.textContent = '';
    } catch (e) {
      if (e instanceof SelectorError) this.selError.textContent = e.message;
      else throw e;
    }
  }

  private addMatcher(m: Matcher): void {
    const s = getState();
    navigate({ matchers: [...s.matchers.filter((x) => x.name !== m.name), m], focus: '' });
  }

  private onRange(): void {
    const v = this.rangeSel.value;
    if (v === 'custom') {
      const s = getState();
      try {
        this.fromInput.value = toLocalInput(parseTime(s.from));
        this.untilInput.value = toLocalInput(parseTime(s.until));
      } catch { /* ignore */ }
      this.customBox.hidden = false;
      return;
    }
    const [from, until] = v.split('|');
    navigate({ from, until, leftFrom: '', leftUntil: '', rightFrom: '', rightUntil: '' });
  }

  private applyCustom(): void {
    const from = String(fromLocalInput(this.fromInput.value));
    const until = String(fromLocalInput(this.untilInput.value));
    if (!isValidTime(from) || !isValidTime(until) || Number(from) >= Number(until)) {
      this.selError.textContent = 'Custom range: "from" must be before "until"';
      return;
    }
    navigate({ from, until, leftFrom: '', leftUntil: '', rightFrom: '', rightUntil: '' });
  }

  // --- autocomplete -------------------------------------------------------------------------
  private async onSelInput(): Promise<void> {
    const text = this.selInput.value;
    const ctx = completionContext(text, this.selInput.selectionStart ?? text.length);
    const cursor = this.selInput.selectionStart ?? text.length;
    let items: { text: string; apply: () => void }[] = [];
    if (ctx.kind === 'name') {
      items = this.labelNames
        .filter((n) => n.startsWith(ctx.prefix))
        .map((n) => ({
          text: n,
          apply: () => this.insert(cursor - ctx.prefix.length, cursor, `${n}="`),
        }));
    } else {
      const vals = await this.values(ctx.label).catch(() => [] as string[]);
      items = vals
        .filter((v) => v.startsWith(ctx.prefix))
        .map((v) => ({ text: v, apply: () => this.insert(cursor - ctx.prefix.length, cursor, `${v}"`) }));
    }
    this.showAc(items.slice(0, 50));
  }

  private insert(start: number, end: number, text: string): void {
    const v = this.selInput.value;
    let after = v.slice(end);
    // Completing a value: swallow an existing closing quote.
    if (text.endsWith('"') && after.startsWith('"')) after = after.slice(1);
    this.selInput.value = v.slice(0, start) + text + after;
    const pos = start + text.length;
    this.selInput.setSelectionRange(pos, pos);
    this.selInput.focus();
    this.onSelInput();
  }

  private showAc(items: { text: string; apply: () => void }[]): void {
    this.acItems = items;
    this.acIndex = -1;
    this.acList.replaceChildren(
      ...items.map((it, i) => h('li', { class: 'mono', onmousedown: (e: Event) => { e.preventDefault(); this.acItems[i].apply(); } }, it.text)),
    );
    this.acList.hidden = items.length === 0 || document.activeElement !== this.selInput;
  }

  private hideAc(): void {
    this.acList.hidden = true;
  }

  private onSelKey(e: KeyboardEvent): void {
    if (!this.acList.hidden && this.acItems.length) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        this.acIndex = (this.acIndex + (e.key === 'ArrowDown' ? 1 : -1) + this.acItems.length) % this.acItems.length;
        [...this.acList.children].forEach((li, i) => li.classList.toggle('active', i === this.acIndex));
        return;
      }
      if ((e.key === 'Enter' || e.key === 'Tab') && this.acIndex >= 0) {
        e.preventDefault();
        this.acItems[this.acIndex].apply();
        return;
      }
      if (e.key === 'Escape') { this.hideAc(); return; }
    }
    if (e.key === 'Enter') {
      e.preventDefault();
      this.hideAc();
      this.applySelector();
    }
  }

  // --- "select tags" dropdown ---------------------------------------------------------------
  private toggleTags(): void {
    if (!this.tagsPanel.hidden) {
      this.tagsPanel.hidden = true;
      return;
    }
    this.showLabelList();
    this.tagsPanel.hidden = false;
  }

  private showLabelList(): void {
    const list = h('ul', { class: 'tag-list' },
      ...this.labelNames.map((n) => h('li', { class: 'mono', testid: `tag-name-${n}`, onclick: () => this.showValueList(n) }, n, h('span', { class: 'chev' }, '›'))),
    );
    if (!this.labelNames.length) list.append(h('li', { class: 'muted' }, 'no labels'));
    this.tagsPanel.replaceChildren(h('div', { class: 'tp-title' }, 'Labels'), list);
  }

  private async showValueList(label: string): Promise<void> {
    this.tagsPanel.replaceChildren(h('div', { class: 'tp-title' }, `${label} …`));
    const vals = await this.values(label).catch(() => [] as string[]);
    const cur = getState().matchers.find((m) => m.name === label && m.op === '=')?.value;
    this.tagsPanel.replaceChildren(
      h('div', { class: 'tp-title' }, h('button', { class: 'link', onclick: () => this.showLabelList() }, '‹ labels'), ` ${label}`),
      h('ul', { class: 'tag-list' },
        ...vals.map((v) =>
          h('li', {
            class: `mono${v === cur ? ' current' : ''}`,
            testid: `tag-value-${v}`,
            onclick: () => { this.tagsPanel.hidden = true; this.addMatcher({ name: label, op: '=', value: v }); },
          }, v),
        ),
        cur ? h('li', { class: 'muted', onclick: () => { this.tagsPanel.hidden = true; navigate({ matchers: getState().matchers.filter((m) => m.name !== label) }); } }, `clear ${label}`) : null,
      ),
    );
  }
}

function fill(sel: HTMLSelectElement, values: string[], current: string, emptyLabel?: string): void {
  const opts = values.map((v) => h('option', { value: v }, v));
  if (emptyLabel !== undefined) opts.unshift(h('option', { value: '' }, emptyLabel));
  sel.replaceChildren(...opts);
  sel.value = current;
}

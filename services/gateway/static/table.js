// The job table of the workflow page: columns (shown or hidden, kept in this browser),
// sorting and filtering on the job objects, and virtual rows: only the rows in view, and
// a margin, are in the DOM, made the first time they come into view.
// Methods of WorkflowPage (workflow.js), which copies them onto its prototype.

import { $, bar, clock, h, setAttr, setBadge, setText, span, stamp } from './dom.js';
import { RANK } from './jobstate.js';

export const COLUMNS = [
  { key: 'id', label: 'ID', get: (j) => j.id, num: true },
  { key: 'name', label: 'Name', get: (j) => j.name },
  { key: 'kind', label: 'Kind', get: (j) => j.kind || '' },
  { key: 'host', label: 'Host', get: (j) => j.host || '' },
  { key: 'state', label: 'State', get: (j) => j.state },
  { key: 'progress', label: 'Progress', get: (j) => j.progress || 0, num: true },
  { key: 'start', label: 'Start', get: (j) => j.started || 0, num: true },
  { key: 'end', label: 'End', get: (j) => j.ended || 0, num: true },
  { key: 'duration', label: 'Duration', get: (j) => (j.started ? (j.ended || Date.now()) - j.started : -1), num: true },
  { key: 'attempt', label: 'Attempt', get: (j) => j.attempt, num: true },
  { key: 'native', label: 'Native ID', get: (j) => j.native_id || '', hidden: true },
  { key: 'exit', label: 'Exit code', get: (j) => j.exit_code ?? '', hidden: true },
];
const hiddenCols = new Set(JSON.parse(localStorage.getItem('jobmesh.columns') ||
  JSON.stringify(COLUMNS.filter((c) => c.hidden).map((c) => c.key))));
const collator = new Intl.Collator(undefined, { numeric: true });
const SPACERS = [0, 1].map(() => h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: COLUMNS.length })));

export class TableView {
  tableControls() {
    $('#jobs-head').replaceChildren(...COLUMNS.map((c) => h('th', { scope: 'col', 'data-col': c.key },
      h('button', { type: 'button', class: 'sort', onclick: () => this.sortBy(c.key) },
        c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' })))));
    if ($('#state-filter').options.length === 1) {
      $('#state-filter').append(...Object.keys(RANK).map((s) => h('option', { value: s }, s.toLowerCase())));
    }
    const toggle = (e, key) => { hiddenCols[e.target.checked ? 'delete' : 'add'](key); this.columnStyle(); };
    $('#column-list').replaceChildren(h('legend', { class: 'sr-only' }, 'Columns to show'),
      ...COLUMNS.map((c) => h('label', { class: 'check' }, h('input', { type: 'checkbox', 'data-col': c.key,
        checked: !hiddenCols.has(c.key), disabled: c.key === 'name', onchange: (e) => toggle(e, c.key) }), c.label)));
    this.columnStyle();
    let typing = 0;
    this.on($('#filter'), 'input', () => { clearTimeout(typing); typing = setTimeout(() => this.applyOrder(), 120); });
    this.on($('#state-filter'), 'change', () => this.applyOrder());
    const scrolled = () => this.later('scroll', 16, () => this.renderWindow());
    this.on($('.table-wrap'), 'scroll', scrolled); this.on(window, 'resize', scrolled);
    this.on($('#jobs-rows'), 'click', (e) => {
      const tr = e.target.closest('tr[data-job]');
      if (tr && !e.target.closest('a')) location.hash = this.href(tr.dataset.job, 'table');
    });
  }
  columnStyle() {
    localStorage.setItem('jobmesh.columns', JSON.stringify([...hiddenCols]));
    let style = $('#column-style');
    if (!style) document.head.append(style = h('style', { id: 'column-style' }));
    style.textContent = [...hiddenCols].map((k) => `#jobs [data-col="${k}"]{display:none}`).join('\n');
    SPACERS.forEach((tr) => { tr.firstChild.colSpan = COLUMNS.length - hiddenCols.size; });
  }
  buildRows() {  // a job's row is made when it first comes into view (10,000 jobs: a few dozen)
    for (const j of this.jobs.values()) { j.row = null; j.cells = null; }
    this.window = null;  // rows are attached by renderWindow when in view
  }
  rowOf(j) {
    if (j.row) return j.row;
    const c = j.cells = {};
    j.row = h('tr', { 'data-job': j.name }, COLUMNS.map((col) => (c[col.key] = h('td', { 'data-col': col.key }))));
    c.name.append(h('a', { href: this.href(j.name, 'table') }, j.name));
    c.state.append(j.badge = h('span'));
    c.progress.append(j.bar = bar());
    this.renderRow(j);
    if (this.detail?.job === j.name) j.row.classList.add('selected');
    return j.row;
  }
  renderRow(j) {
    const c = j.cells;
    if (!c) return;
    setAttr(j.row, 'data-state', j.state);
    setText(c.id, j.id); setText(c.kind, j.kind); setText(c.host, j.host);
    setBadge(j.badge, j.state);
    if (j.state === 'QUEUED' && j.reason) setText(j.badge, `queued: ${j.reason}`);  // e.g. Slurm's
    if (j.state === 'SUCCEEDED' && j.reason === 'cached') {  // reused from an earlier run
      setText(j.badge, 'cached'); j.badge.classList.add('cached');
    }
    setAttr(j.badge, 'title', j.reason || '');
    j.bar.set(j.progress, j.msg, j.state);
    setText(c.start, clock(j.started)); setAttr(c.start, 'title', stamp(j.started));
    setText(c.end, clock(j.ended)); setAttr(c.end, 'title', stamp(j.ended));
    setText(c.duration, j.started ? span((j.ended || Date.now()) - j.started) : '');
    setText(c.attempt, j.attempt); setText(c.native, j.native_id); setText(c.exit, j.exit_code);
  }
  sortBy(key) { this.sort = { key, dir: this.sort.key === key ? -this.sort.dir : 1 }; this.applyOrder(); }
  applyOrder() {
    const col = COLUMNS.find((c) => c.key === this.sort.key), dir = this.sort.dir;
    const list = [...this.jobs.values()].sort((a, b) => {
      const x = col.get(a), y = col.get(b);
      return (col.num ? x - y : collator.compare(x, y)) * dir || a.id - b.id;
    });
    const q = $('#filter').value.trim().toLowerCase(), st = $('#state-filter').value;
    this.order = list.filter((j) => (!st || j.state === st) &&
      (!q || [j.id, j.name, j.kind, j.host, j.state, j.msg].some((v) => v != null && String(v).toLowerCase().includes(q))));
    for (const th of $('#jobs-head').children) {
      const on = th.dataset.col === this.sort.key;
      th.setAttribute('aria-sort', on ? (dir > 0 ? 'ascending' : 'descending') : 'none');
      th.querySelector('.arrow').textContent = on ? (dir > 0 ? '▲' : '▼') : '';
    }
    const shown = this.order.length;
    setText($('#row-count'), shown === list.length ? `${shown} jobs` : `${shown} of ${list.length} jobs`);
    this.renderWindow();
  }
  // Only the rows in view, and a margin, are in the DOM, between two spacer rows: with a
  // thousand jobs an update then lays out and paints a few dozen rows, not all of them.
  renderWindow() {
    const wrap = $('.table-wrap'), order = this.order || [], rowH = this.rowH || 37;
    const first = Math.max(0, Math.floor(wrap.scrollTop / rowH) - 20);
    const rows = order.slice(first, first + Math.ceil((wrap.clientHeight || innerHeight) / rowH) + 40);
    const w = this.window;
    if (w && w.first === first && w.rows.length === rows.length && w.rows.every((j, i) => j === rows[i])) return;
    this.window = { first, rows };
    SPACERS[0].firstChild.style.height = `${first * rowH}px`;
    SPACERS[1].firstChild.style.height = `${(order.length - first - rows.length) * rowH}px`;
    $('#jobs-rows').replaceChildren(SPACERS[0], ...rows.map((j) => this.rowOf(j)), SPACERS[1]);
    rows.forEach((j, i) => setAttr(j.row, 'aria-rowindex', first + i + 2));
    setAttr($('#jobs'), 'aria-rowcount', order.length + 1);
    if (!this.rowH && rows.length) this.rowH = rows[0].row.offsetHeight || 37;
  }
}

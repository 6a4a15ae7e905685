// Large graphs: above a size limit the monitor draws each foreach node's jobs as one node
// (services/monitor/graph.py, collapse), marked data-group and data-count, labelled with
// its jobs' counts per state. A click or Enter on it expands it below the graph: a square
// per job, coloured by its state as the run goes on; a square's click opens its job, and
// "Show in the table" lists the jobs there.

import { WORD } from './jobstate.js';

const SVG = 'http://www.w3.org/2000/svg';
const CELL = 12, GAP = 2;

function el(tag, attrs = {}, ...kids) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...kids.flat().filter((k) => k != null));
  return e;
}

// A job belongs to a group if the foreach node it came from has the group's name (a past
// run's page has no spec: then its name starts with the node's name and a dash, as
// jobmesh names the jobs a foreach makes).
const member = (j, name) => (j.spec?.foreach_of ? j.spec.foreach_of === name : j.name.startsWith(`${name}-`));

export class Groups {
  constructor(page, box) { Object.assign(this, { page, box, open: null }); box.hidden = true; box.replaceChildren(); }
  // A new SVG was mounted: make its group nodes operable, and keep an open group open.
  attach(svg) {
    const nodes = svg.querySelectorAll('g[data-group]');
    for (const g of nodes) {
      g.setAttribute('tabindex', '0'); g.setAttribute('role', 'button');
      g.setAttribute('aria-expanded', String(this.open?.name === g.dataset.group));
      g.setAttribute('aria-label', `${g.dataset.group}: ${g.dataset.count} jobs, ${g.dataset.state?.toLowerCase()}; press Enter to list them`);
    }
    const note = document.querySelector('#group-note');
    if (note) {
      note.hidden = !nodes.length;
      note.textContent = nodes.length ? `${this.page.jobs.size} jobs: each foreach node is drawn as one node with its jobs counted; click one to see its jobs.` : '';
    }
  }
  toggle(name) { if (this.open?.name === name) this.close(); else this.show(name); }
  show(name) {
    const page = this.page, jobs = [...page.jobs.values()].filter((j) => member(j, name));
    const width = Math.max(300, (this.box.parentElement?.clientWidth || 900) - 40);
    const cols = Math.max(1, Math.floor(width / (CELL + GAP))), rows = Math.ceil(jobs.length / cols);
    const grid = el('svg:svg', { class: 'group-grid', width: cols * (CELL + GAP), height: rows * (CELL + GAP), role: 'group',
      'aria-label': `The ${jobs.length} jobs of ${name}, one square each, coloured by state` });
    const cells = new Map();
    jobs.forEach((j, i) => {
      const r = el('svg:rect', { x: (i % cols) * (CELL + GAP), y: Math.floor(i / cols) * (CELL + GAP), width: CELL, height: CELL,
        'data-job': j.name, class: 'cell' }, el('svg:title', {}, ''));
      cells.set(j.name, r); grid.append(r);
    });
    const counts = el('span', { class: 'counts' });
    this.box.replaceChildren(el('div', { class: 'group-head' },
      el('h3', { id: 'group-title' }, `${name}: ${jobs.length} jobs`), counts,
      el('button', { type: 'button', id: 'group-table', onclick: () => this.inTable(name) }, 'Show in the table'),
      el('button', { type: 'button', class: 'icon', 'aria-label': `Collapse ${name}`, onclick: () => this.close() }, '×')), grid);
    grid.addEventListener('click', (e) => {
      const job = e.target.closest('rect[data-job]')?.dataset.job;
      if (job) location.hash = page.href(job, 'graph');
    });
    this.open = { name, jobs, cells, counts };
    this.box.hidden = false;
    jobs.forEach((j) => this.paint(j));
    this.count();
    page.svg?.querySelectorAll('g[data-group]').forEach((g) => g.setAttribute('aria-expanded', String(g.dataset.group === name)));
    this.box.scrollIntoView({ block: 'nearest' });
  }
  close() {
    this.open = null; this.box.hidden = true; this.box.replaceChildren();
    this.page.svg?.querySelectorAll('g[data-group]').forEach((g) => g.setAttribute('aria-expanded', 'false'));
  }
  // A job changed: recolour its square (call count() once after a batch).
  paint(j) {
    const r = this.open?.cells.get(j.name);
    if (!r) return false;
    const fill = this.page.colors[WORD[j.state]] || this.page.colors.ready || 'white';
    if (r.getAttribute('fill') !== fill) r.setAttribute('fill', fill);
    if (r.dataset.state !== j.state) { r.dataset.state = j.state; r.firstChild.textContent = `${j.name}: ${j.state.toLowerCase()}`; }
    return true;
  }
  count() {
    if (!this.open) return;
    const by = {};
    for (const j of this.open.jobs) by[j.state] = (by[j.state] || 0) + 1;
    const text = Object.entries(by).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(', ');
    if (this.open.counts.textContent !== text) this.open.counts.textContent = text;
  }
  inTable(name) {
    document.querySelector('#filter').value = `${name}-`;
    location.hash = this.page.href(null, 'table');
    this.page.applyOrder();
  }
}

// The graph tab: the server's SVG, recoloured and relabelled in place from the live
// state, zoomed and panned with the pointer; collapsed foreach nodes are groups.js's.
// Methods of WorkflowPage (workflow.js), which copies them onto its prototype.

import { ApiError, api } from './api.js';
import { $, enc, h, setAttr, setText } from './dom.js';
import { labelLines, RANK, WORD } from './jobstate.js';

export class GraphView {
  // the SVG is fetched again at most every 5 s while it changes, and once at the end of a run
  async loadGraph() {
    if (this.graphBusy) { this.graphAgain = true; return; }
    this.graphBusy = true; this.svgAt = Date.now(); this.stale = false;
    try {
      // a past run's own graph if one was kept, else the current layout in its colours
      const text = await (this.pinned ? api(`${this.base}/runs/${enc(this.pinned)}/graph.svg`, { as: 'text' })
        .catch((e) => { if (e.status === 404) return null; throw e; }) : null) ?? await api(`${this.base}/graph.svg`, { as: 'text' });
      if (!this.dead) { this.mountSvg(text); $('#graph-msg').hidden = true; }
    } catch (e) {
      if (!this.dead && (!this.svg || e.status === 404)) {
        this.svg = null; $('#graph').replaceChildren();
        setText($('#graph-msg'), e.message); $('#graph-msg').hidden = false;
      }
    } finally {
      this.graphBusy = false;
      if (this.graphAgain && !this.dead) { this.graphAgain = false; this.loadGraph(); }
    }
  }
  mountSvg(text) {
    const svg = new DOMParser().parseFromString(text, 'image/svg+xml').documentElement;
    if (svg.localName !== 'svg') throw new ApiError('The graph is not valid SVG', 0);
    const [x, y, w, hh] = (svg.getAttribute('viewBox') || '0 0 100 100').split(/[\s,]+/).map(Number);
    const keep = this.view && this.home?.w === w && this.home?.h === hh;
    svg.removeAttribute('width'); svg.removeAttribute('height');
    svg.setAttribute('preserveAspectRatio', 'xMidYMid meet');
    this.jobs.forEach((j) => { j.node = null; });
    for (const g of svg.querySelectorAll('g[data-job]')) {
      const j = this.jobs.get(g.getAttribute('data-job'));
      if (!j) continue;
      j.node = g;
      j.shape = [...g.children].find((c) => ['polygon', 'ellipse', 'path', 'rect'].includes(c.localName) &&
        !['none', null].includes(c.getAttribute('fill')));
      j.texts = [...g.children].filter((c) => c.localName === 'text');
      g.setAttribute('tabindex', '0'); g.setAttribute('role', 'button');
      this.paintNode(j);
    }
    $('#graph').replaceChildren(svg);
    this.svg = svg; this.home = { x, y, w, h: hh };
    this.groups.attach(svg);
    // a graph too big to read when fitted opens at a readable scale, at its top centre
    const box = $('#graph').getBoundingClientRect(), k = 1.2;
    const small = box.width && Math.min(box.width / w, box.height / hh) < 0.3;
    const first = small ? { x: x + (w - box.width * k) / 2, y, w: box.width * k, h: box.height * k } : this.home;
    this.setView(keep ? this.view : first);
    if (this.detail) this.jobs.get(this.detail.job)?.node?.classList.add('selected');
  }
  paintNode(j) {
    const g = j.node;
    if (!g) return;
    if (g.getAttribute('data-state') !== j.state) {
      g.setAttribute('data-state', j.state); g.classList.remove(...Object.keys(RANK)); g.classList.add(j.state);
    }
    g.classList.toggle('cached', j.state === 'SUCCEEDED' && j.reason === 'cached');
    const fill = this.colors[WORD[j.state]] || this.colors.ready || 'white';
    if (j.shape && j.shape.getAttribute('fill') !== fill) j.shape.setAttribute('fill', fill);
    const n = j.texts.length;
    let lines = n ? labelLines(j, this) : [];
    if (lines.length > n) {  // as the server does: the last text element takes the rest
      const rest = lines.slice(n - 1);
      lines = [...lines.slice(0, n - 1), rest.includes(null) ? null : rest.join(' ')];
    }
    j.texts.forEach((t, i) => { if (lines[i] !== null) setText(t, lines[i] ?? ''); });
    setAttr(g, 'aria-label', `${j.name}: ${j.state.toLowerCase()}, ${Math.round(j.progress || 0)}%`);
  }
  renderLegend() {
    const words = ['ready', 'submitted', 'running', 'done', 'failed', 'canceled', 'skipped'];
    $('#legend').replaceChildren(...words.map((w) => h('li', {},
      h('span', { class: 'swatch', style: `background:${this.colors[w] || this.colors.ready || 'white'}` }), w)));
  }
  setView(v) { if (v && this.svg) this.svg.setAttribute('viewBox', `${(this.view = v).x} ${v.y} ${v.w} ${v.h}`); }
  zoom(f, cx, cy) {
    const v = this.view;
    if (!v) return;
    const w = Math.min(this.home.w * 4, Math.max(Math.min(this.home.w, 40) / 2, v.w * f)), k = w / v.w;
    cx ??= v.x + v.w / 2; cy ??= v.y + v.h / 2;
    this.setView({ x: cx - (cx - v.x) * k, y: cy - (cy - v.y) * k, w, h: v.h * k });
  }
  graphControls() {  // zoom, pan and fit; a click on a node opens the job (keys: keys.js)
    const g = $('#graph'), on = (id, fn) => this.on($(id), 'click', fn);
    on('#zoom-in', () => this.zoom(0.8));
    on('#zoom-out', () => this.zoom(1.25));
    on('#zoom-fit', () => this.setView(this.home));
    this.on(g, 'wheel', (e) => {
      e.preventDefault();
      const m = this.svg?.getScreenCTM(), p = m && new DOMPoint(e.clientX, e.clientY).matrixTransform(m.inverse());
      this.zoom(Math.exp(e.deltaY * 0.002), p?.x, p?.y);
    });
    this.on(g, 'pointerdown', (e) => {
      if (e.button !== 0 || !this.view) return;
      const start = { x: e.clientX, y: e.clientY, view: this.view }, r = g.getBoundingClientRect();
      const scale = Math.min(r.width / start.view.w, r.height / start.view.h);
      this.dragged = false;
      const move = (m) => {
        const dx = m.clientX - start.x, dy = m.clientY - start.y;
        if (Math.abs(dx) + Math.abs(dy) > 4) { this.dragged = true; g.classList.add('panning'); }
        if (this.dragged) this.setView({ ...start.view, x: start.view.x - dx / scale, y: start.view.y - dy / scale });
      };
      window.addEventListener('pointermove', move, { signal: this.ac.signal });
      const up = () => { g.classList.remove('panning'); window.removeEventListener('pointermove', move); };
      window.addEventListener('pointerup', up, { once: true, signal: this.ac.signal });
    });
    this.on(g, 'click', (e) => {
      const node = e.target.closest('g[data-job]');
      if (node?.dataset.group && !this.dragged) this.groups.toggle(node.dataset.group);
      else if (node && !this.dragged) location.hash = this.href(node.dataset.job, 'graph');
    });
  }
}

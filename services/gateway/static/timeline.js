// The timeline (a Gantt chart) of one run, drawn as SVG by hand: one bar per job, grouped by
// the host (or executor kind) it ran on; the hatched part of a bar is the time the job
// waited after it was released to its pool, the solid part the time it ran. Colours are the
// workflow's state colours. Hover or focus a bar for its times; Enter or a click opens the job.
// It is redrawn at most once a second (10,000 jobs: every 2 s) while the run goes on, and
// only while it is shown.

import { WORD } from './jobstate.js';

const WAITING = new Set(['READY', 'QUEUED']);
const ROW = 18, BAR = 12, HEAD = 26, GROUP = 22, LEFT = 190, RIGHT = 16;
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pad = (n) => String(n).padStart(2, '0');
const clock = (ms) => (ms ? new Date(ms).toTimeString().slice(0, 8) : '');

export function span(ms) {
  if (ms == null || ms < 0) return '';
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  const r = Math.round(s);
  if (r < 60) return `${r}s`;
  return r < 3600 ? `${Math.floor(r / 60)}m ${pad(r % 60)}s` : `${Math.floor(r / 3600)}h ${pad(Math.floor(r / 60) % 60)}m`;
}

// When each job's attempt was released to its pool: the first `ready` or `queued` event of
// the attempt (live events may come before the page knows the job), or a past run's record.
export class QueueTimes {
  constructor() { this.map = new Map(); }
  note(ev) {
    const key = `${ev.run}\u0000${ev.job}`, have = this.map.get(key);
    if (!have || ev.attempt > have.attempt) this.map.set(key, { attempt: ev.attempt, t: null });
    const rec = this.map.get(key);
    if (rec.attempt === ev.attempt && (ev.type === 'ready' || ev.type === 'queued') && !rec.t) rec.t = ev.time * 1000;
  }
  load(run, queued, jobs) {  // {job: ISO time} of a run's record, for the jobs' attempts
    for (const j of jobs) if (queued[j.name]) this.map.set(`${run}\u0000${j.name}`, { attempt: j.attempt, t: Date.parse(queued[j.name]) });
  }
  of(run, j) {
    const rec = this.map.get(`${run}\u0000${j.name}`);
    return rec && rec.attempt === j.attempt ? rec.t : null;
  }
}

// Rows are grouped by executor, and for remote ones by the host the spec names (known before
// a job starts, so a job keeps its group); a job's own host is in its times.
export const groupOf = (j) => (!j.kind || j.kind === 'local' ? 'local executor'
  : `${j.kind} executor, ${(j.spec?.host && !j.spec.host.includes('{') ? j.spec.host : j.host) || 'any host'}`);

// What a bar says on hover and to a screen reader.
export function describe(j, now = Date.now()) {
  const lines = [`${j.name}: ${j.state.toLowerCase()}${j.attempt > 1 ? `, attempt ${j.attempt}` : ''}`,
    `${groupOf(j)}${j.host ? `, ran on ${j.host}` : ''}`];
  if (j.queued) lines.push(`queued ${clock(j.queued)}, waited ${span((j.started || (WAITING.has(j.state) ? now : j.ended || now)) - j.queued)}`);
  if (j.started) lines.push(`started ${clock(j.started)}, ran ${span((j.ended || now) - j.started)}${j.ended ? '' : ' so far'}`);
  if (j.ended) lines.push(`ended ${clock(j.ended)}`);
  if (!j.queued && !j.started) lines.push(j.ended ? 'never ran' : 'not started yet');
  for (const a of pastAttempts(j)) {
    lines.push(`attempt ${a.attempt}: ${String(a.state).toLowerCase()}, ran ${span((a.ended - a.started) * 1000)} from ${clock(a.started * 1000)}`);
  }
  return lines;
}

// Earlier attempts of a job (a retry, a repeat's iterations) that ran: drawn faded on its row.
const pastAttempts = (j) => [...new Map((j.attempts || []).filter((a) => a.started && a.ended && a.attempt < j.attempt)
  .map((a) => [a.attempt, a])).values()];  // one per attempt: live events may repeat what a load brought

export class Timeline {
  // page: the workflow page (jobs, colors, running, href); box: the element to draw in
  constructor(page, box, tip) {
    Object.assign(this, { page, box, tip, drawn: 0, timer: 0, zoom: 1 });
    const zoom = (k) => { this.zoom = k ? Math.min(64, Math.max(1, this.zoom * k)) : 1; this.update(true); };
    for (const [id, k] of [['#tl-zoom-in', 2], ['#tl-zoom-out', 0.5], ['#tl-fit', 0]]) {
      document.querySelector(id)?.addEventListener('click', () => zoom(k), { signal: page.ac.signal });
    }
    box.addEventListener('pointerover', (e) => this.hover(e.target.closest('g[data-job]'), e), { signal: page.ac.signal });
    box.addEventListener('pointermove', (e) => this.place(e.clientX, e.clientY), { signal: page.ac.signal });
    box.addEventListener('pointerleave', () => this.hover(null), { signal: page.ac.signal });
    box.addEventListener('focusin', (e) => {
      const g = e.target.closest('g[data-job]'), r = g?.getBoundingClientRect();
      this.hover(g); if (r) this.place(r.left + 40, r.bottom);
    }, { signal: page.ac.signal });
    box.addEventListener('focusout', () => this.hover(null), { signal: page.ac.signal });
    box.addEventListener('scroll', () => {  // only the rows in view are drawn: draw the new ones
      if (!this.raf) this.raf = requestAnimationFrame(() => { this.raf = 0; if (!page.dead) this.draw(); });
    }, { signal: page.ac.signal });
    box.addEventListener('click', (e) => {
      const g = e.target.closest('g[data-job]');
      if (g) location.hash = page.href(g.dataset.job, 'timeline');
    }, { signal: page.ac.signal });
    box.addEventListener('keydown', (e) => {
      const g = e.target.closest?.('g[data-job]');
      if (!g) return;
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); location.hash = page.href(g.dataset.job, 'timeline'); return; }
      const step = { ArrowDown: 'nextElementSibling', ArrowUp: 'previousElementSibling' }[e.key];
      if (!step) return;
      e.preventDefault();
      let n = g[step];
      while (n && n.localName !== 'g') n = n[step];
      n?.focus();
    }, { signal: page.ac.signal });
  }
  hover(g, e) {
    this.hovered = g?.dataset.job || null;
    if (!g) { this.tip.hidden = true; return; }
    const j = this.page.jobs.get(g.dataset.job);
    if (!j) return;
    this.tip.replaceChildren(...describe(j).map((t, i) => Object.assign(document.createElement(i ? 'div' : 'strong'), { textContent: t })));
    this.tip.hidden = false;
    if (e) this.place(e.clientX, e.clientY);
  }
  place(x, y) {
    if (this.tip.hidden) return;
    const w = this.tip.offsetWidth, hgt = this.tip.offsetHeight;
    this.tip.style.left = `${Math.max(4, Math.min(innerWidth - w - 4, x + 14))}px`;
    this.tip.style.top = `${y + hgt + 18 > innerHeight ? y - hgt - 10 : y + 16}px`;
  }
  // Ask for a redraw: at once if none happened for a second, else a second after the last.
  update(force = false) {
    if (this.box.closest('[hidden]')) return;
    const every = Math.max(1000, this.page.jobs.size / 5);  // 10,000 jobs: every 2 s
    const wait = force ? 0 : this.drawn + every - performance.now();
    if (wait <= 0) { clearTimeout(this.timer); this.timer = 0; this.draw(); return; }
    if (!this.timer) this.timer = setTimeout(() => { this.timer = 0; if (!this.page.dead) this.draw(); }, wait);
  }
  draw() {
    this.drawn = performance.now();
    const page = this.page, now = Date.now(), jobs = [...page.jobs.values()];
    for (const j of jobs) j.queued = page.qtimes.of(page.run, j);
    if (!page.run || !jobs.length) {
      this.box.innerHTML = `<p class="empty">${page.run ? 'No jobs.' : 'Not run yet: the timeline shows a run once it starts.'}</p>`;
      return;
    }
    let t0 = page.started || now, t1 = page.running ? now : 0;
    for (const j of jobs) {
      for (const t of [j.queued, j.started, j.ended, ...pastAttempts(j).map((a) => a.started * 1000)]) {
        if (t) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); }
      }
    }
    t1 = Math.max(t1, t0 + 1000);
    const groups = new Map();
    for (const j of jobs) {
      const k = groupOf(j);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(j);
    }
    const order = [...groups.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const first = (j) => j.queued || j.started || j.ended || Infinity;
    const fit = Math.max(640, (this.box.clientWidth || 900) - 2), width = Math.round(LEFT + RIGHT + (fit - LEFT - RIGHT) * this.zoom);
    const plot = width - LEFT - RIGHT;
    const x = (t) => LEFT + ((t - t0) / (t1 - t0)) * plot;
    const height = HEAD + order.length * GROUP + jobs.length * ROW + 8;
    const step = STEPS.find((s) => (plot / ((t1 - t0) / 1000)) * s >= 90) || 86400;
    const out = [`<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="group" aria-label="Timeline of run ${esc(page.run)}: one bar per job, from its release to its end; Tab moves between jobs">`,
      '<defs><pattern id="tl-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#8a93a0" stroke-width="2"/></pattern></defs>',
      '<g class="tl-axis">'];
    // Only the rows in view, and a margin, are drawn (10,000 jobs: a hundred rows); the axis
    // labels stay at the top of the view.
    const top = this.box.scrollTop, lo = top - 400, hi = top + (this.box.clientHeight || 600) + 400, labels = [];
    for (let s = 0; s * 1000 <= t1 - t0; s += step) {
      const px = x(t0 + s * 1000).toFixed(1);
      out.push(`<line x1="${px}" x2="${px}" y1="${HEAD - 6}" y2="${height}"/>`);
      labels.push(`<text x="${px}" y="${top + 16}" text-anchor="middle">+${esc(span(s * 1000))}</text>`);
    }
    if (page.running) out.push(`<line class="tl-now" x1="${x(now).toFixed(1)}" x2="${x(now).toFixed(1)}" y1="${HEAD - 6}" y2="${height}"/>`);
    out.push('</g>');
    let y = HEAD;
    for (const key of order) {
      const list = groups.get(key).sort((a, b) => first(a) - first(b) || a.id - b.id);
      if (y + GROUP >= lo && y <= hi) out.push(`<text class="tl-group" x="4" y="${y + 15}">${esc(key)} (${list.length})</text>`);
      y += GROUP;
      for (const j of list) {
        if (y + ROW < lo || y > hi) { y += ROW; continue; }
        const fill = page.colors[WORD[j.state]] || page.colors.ready || 'white';
        const runEnd = j.ended || now, qEnd = j.started || (WAITING.has(j.state) ? now : j.ended);
        const parts = [`<text class="tl-name" x="${LEFT - 8}" y="${y + BAR}" text-anchor="end">${esc(j.name.length > 28 ? `${j.name.slice(0, 27)}…` : j.name)}</text>`];
        for (const a of pastAttempts(j)) {
          const c = page.colors[WORD[a.state]] || page.colors.ready || 'white';
          parts.push(`<rect class="tl-past" x="${x(a.started * 1000).toFixed(1)}" y="${y + 1}" width="${Math.max(2, x(a.ended * 1000) - x(a.started * 1000)).toFixed(1)}" height="${BAR - 2}" fill="${esc(c)}"/>`);
        }
        if (j.queued && qEnd) {
          parts.push(`<rect class="tl-queue" x="${x(j.queued).toFixed(1)}" y="${y + 3}" width="${Math.max(1, x(qEnd) - x(j.queued)).toFixed(1)}" height="${BAR - 6}"/>`);
        }
        if (j.started) {
          parts.push(`<rect class="tl-run" x="${x(j.started).toFixed(1)}" y="${y}" width="${Math.max(2, x(runEnd) - x(j.started)).toFixed(1)}" height="${BAR}" fill="${esc(fill)}"/>`);
        } else if (j.ended) {  // skipped or canceled before it ran: a tick where it ended
          parts.push(`<rect class="tl-mark" x="${(x(j.ended) - 1).toFixed(1)}" y="${y}" width="3" height="${BAR}" fill="${esc(fill)}"/>`);
        }
        const label = describe(j, now).join('; ');
        out.push(`<g class="tl-job" data-job="${esc(j.name)}" data-state="${j.state}" tabindex="0" role="button" aria-label="${esc(label)}">`,
          `<rect class="tl-row" x="0" y="${y - 3}" width="${width}" height="${ROW}"/>`, ...parts, '</g>');
        y += ROW;
      }
    }
    out.push(`<g class="tl-axis tl-labels"><rect x="0" y="${top}" width="${width}" height="${HEAD - 6}"/>`,
      `<text x="4" y="${top + 16}">${esc(`t0 ${clock(t0)}`)}</text>`, ...labels, '</g></svg>');
    const focused = this.box.contains(document.activeElement) ? document.activeElement.dataset?.job : null;
    this.box.innerHTML = out.join('');
    if (focused) this.box.querySelector(`g[data-job="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
    if (this.hovered && !this.tip.hidden) this.hover(this.box.querySelector(`g[data-job="${CSS.escape(this.hovered)}"]`));
  }
}

// The Runs tab: every run the monitor kept (GET api/workflows/NAME/runs), newest first,
// with a small plot of their durations. A run's link opens it in the same page, as
// #/wf/NAME/table?run=RUN: its table, graph and timeline, frozen as the run ended.

import { span } from './timeline.js';

const SVG = 'http://www.w3.org/2000/svg';
const FILL = { SUCCEEDED: '#16a34a', FAILED: '#dc2626', CANCELED: '#6b7280', RUNNING: '#2563eb' };
const enc = encodeURIComponent;
const stamp = (iso) => (iso ? new Date(Date.parse(iso)).toLocaleString() : '');

function el(tag, attrs = {}, ...kids) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null && v !== false) e.setAttribute(k, v === true ? '' : v);
  e.append(...kids.flat().filter((k) => k != null));
  return e;
}

export const runHref = (name, run, tab = 'table') => `#/wf/${enc(name)}${tab === 'table' ? '' : `/${tab}`}${run ? `?run=${enc(run)}` : ''}`;

// One bar per run, oldest on the left, height by duration; each bar links to its run.
export function durationPlot(name, runs) {
  const list = [...runs].reverse(), n = list.length, W = Math.max(120, Math.min(720, n * 24)), H = 90, B = 16;
  const top = Math.max(...list.map((r) => r.duration || 0), 0.001), w = W / Math.max(n, 1);
  const svg = el('svg:svg', { class: 'run-plot', width: W, height: H + B, viewBox: `0 0 ${W} ${H + B}`, role: 'group',
    'aria-label': `Durations of the last ${n} runs, oldest first` });
  list.forEach((r, i) => {
    const hgt = r.duration == null ? 2 : Math.max(2, (r.duration / top) * (H - 4));
    const text = `run ${r.run}: ${r.state.toLowerCase()}${r.duration != null ? `, ${span(r.duration * 1000)}` : ''}`;
    svg.append(el('svg:a', { href: runHref(name, r.current ? null : r.run), 'aria-label': text, 'data-run': r.run },
      el('svg:title', {}, text),
      el('svg:rect', { x: (i * w + w * 0.15).toFixed(1), y: (H - hgt).toFixed(1), width: (w * 0.7).toFixed(1), height: hgt.toFixed(1),
        fill: FILL[r.state] || '#9ca3af', class: r.current ? 'current' : null })));
  });
  svg.append(el('svg:line', { x1: 0, x2: W, y1: H + 0.5, y2: H + 0.5, stroke: '#c3cad4' }),
    el('svg:text', { x: 0, y: H + B - 3, class: 'run-plot-label' }, `longest ${span(top * 1000)}`));
  return svg;
}

export function runsTable(name, runs, pinned) {
  const rows = runs.map((r) => {
    const chips = Object.entries(r.counts || {}).map(([s, k]) => el('span', { class: `chip s-${s}` }, `${k} ${s.toLowerCase()}`));
    const badge = el('span', { class: `badge s-${r.state}` }, r.state.toLowerCase());
    const open = (r.current && !pinned) || r.run === pinned;
    return el('tr', { 'data-run': r.run, class: open ? 'selected' : null },
      el('td', {}, el('a', { href: runHref(name, r.current ? null : r.run), 'aria-current': open ? 'page' : null }, r.run),
        r.current ? el('span', { class: 'muted' }, ' (current)') : null),
      el('td', {}, badge), el('td', { class: 'time' }, stamp(r.started || r.created)),
      el('td', { class: 'time' }, r.duration != null ? span(r.duration * 1000) : r.state === 'RUNNING' ? 'running' : ''),
      el('td', {}, chips));
  });
  return el('table', { class: 'grid', id: 'runs-table' },
    el('caption', { class: 'sr-only' }, `Runs of ${name}, newest first`),
    el('thead', {}, el('tr', {}, ...['Run', 'State', 'Started', 'Duration', 'Jobs'].map((t) => el('th', { scope: 'col' }, t)))),
    el('tbody', {}, rows));
}

// Fill the Runs panel; api: the page's REST helper. Returns the runs.
export async function showRuns(box, api, name, pinned) {
  const doc = await api(`api/workflows/${enc(name)}/runs`);
  if (!doc.runs.length) {
    box.replaceChildren(el('p', { class: 'empty' }, 'No runs yet: the runs of this workflow are listed here once it has run.'));
    return doc.runs;
  }
  box.replaceChildren(
    el('div', { class: 'run-head' }, el('h2', {}, `${doc.runs.length} run${doc.runs.length > 1 ? 's' : ''}`),
      durationPlot(name, doc.runs)),
    el('div', { class: 'table-wrap runs-wrap' }, runsTable(name, doc.runs, pinned)));
  return doc.runs;
}

// The banner above a past run's views.
export function banner(box, name, run, state, ended) {
  box.hidden = !run;
  if (!run) return;
  box.replaceChildren(el('span', {}, 'You are looking at run ', el('strong', {}, run),
    ` (${(state || '').toLowerCase()}${ended ? `, ended ${new Date(ended).toLocaleString()}` : ''}). Nothing here changes. `),
  el('a', { href: runHref(name, null), id: 'run-current' }, 'Back to the current run'));
}

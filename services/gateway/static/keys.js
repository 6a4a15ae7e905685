// The keyboard on the workflow page: arrow keys, Home and End move between the tabs;
// Escape closes the job detail; on the graph, Enter or Space opens a job (or expands a
// collapsed foreach node), arrow keys pan, + and - zoom and 0 fits. The table's and the
// timeline's own controls are buttons and links, reached with Tab.

import { $ } from './dom.js';

export const TABS = ['table', 'graph', 'timeline', 'runs'];

export function keyboard(page) {
  page.on($('.tabs'), 'keydown', (e) => {  // arrow keys move between the tabs
    const i = TABS.indexOf(page.tab), n = TABS.length;
    const t = { ArrowLeft: TABS[(i + n - 1) % n], ArrowRight: TABS[(i + 1) % n], Home: TABS[0], End: TABS[n - 1] }[e.key];
    if (t) { location.hash = page.href(page.wanted, t); $(`#tab-${t}`).focus(); }
  });
  page.on(document, 'keydown', (e) => {
    if (e.key === 'Escape' && page.detail && !document.querySelector('dialog[open]')) location.hash = page.href(null);
  });
  const g = $('#graph');
  page.on(g, 'keydown', (e) => {
    const node = e.target.closest?.('g[data-job]'), v = page.view;
    if (node && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      if (node.dataset.group) page.groups.toggle(node.dataset.group); else location.hash = page.href(node.dataset.job, 'graph');
      return;
    }
    const step = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] }[e.key];
    if (!v) return;
    if (step) page.setView({ ...v, x: v.x + step[0] * v.w, y: v.y + step[1] * v.h });
    else if (e.key === '+' || e.key === '=') page.zoom(0.8);
    else if (e.key === '-') page.zoom(1.25);
    else if (e.key === '0') page.setView(page.home);
    else return;
    e.preventDefault();
  });
}

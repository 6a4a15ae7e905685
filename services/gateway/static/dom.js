// Small DOM helpers shared by the GUI's modules: making elements, writing only what
// changed, times and durations, progress bars, key/value lists, pages and breadcrumbs.

export const $ = (sel) => document.querySelector(sel);
export const enc = encodeURIComponent;

export function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...kids.flat().filter((k) => k != null));
  return e;
}
// Writes only what changed: with a thousand rows, every needless write costs a layout.
export const setText = (e, t) => { t = t == null ? '' : String(t); if (e.textContent !== t) e.textContent = t; };
export const setAttr = (e, k, v) => { v = v == null ? '' : String(v); if (e.getAttribute(k) !== v) e.setAttribute(k, v); };
export const setBadge = (e, state) => { e.className = `badge s-${state}`; setText(e, state.toLowerCase()); };
export const pad = (n) => String(n).padStart(2, '0');
export const clock = (ms) => (ms ? new Date(ms).toTimeString().slice(0, 8) : '');
export const stamp = (ms) => (ms ? new Date(ms).toLocaleString() : '');
export const parseTime = (iso) => (iso ? Date.parse(iso) : null);
export function span(ms) {
  if (ms == null || ms < 0) return '';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  return s < 3600 ? `${Math.floor(s / 60)}m ${pad(s % 60)}s` : `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
}
// A progress bar (role=progressbar) with its label; bar.set(percent, message, state).
export function bar() {
  const fill = h('div', { class: 'fill' }), text = h('span', { class: 'bar-text' });
  const el = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 },
    h('div', { class: 'track' }, fill), text);
  el.set = (p, msg, state) => {
    p = Math.max(0, Math.min(100, Math.round(p || 0)));
    if (el.getAttribute('aria-valuenow') !== String(p)) {
      el.setAttribute('aria-valuenow', p);
      fill.style.transform = `scaleX(${p / 100})`;
    }
    setText(text, msg ? `${p}% ${msg}` : `${p}%`);
    setAttr(el, 'aria-valuetext', text.textContent);
    setAttr(el, 'data-state', state);
    return el;
  };
  return el.set(0);
}
export function kv(dl, pairs) {
  const kids = pairs.filter(([, v]) => v != null && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]);
  const key = kids.map((e) => e.textContent).join('\u0000');
  if (dl.dataset.key !== key) { dl.replaceChildren(...kids); dl.dataset.key = key; }
}
export function save(blob, filename) {
  const a = h('a', { href: URL.createObjectURL(blob), download: filename });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
export function showPage(id, title, ...crumbs) {
  for (const p of document.querySelectorAll('main > section')) p.hidden = p.id !== id;
  document.title = `${title} · jobmesh`;
  $('#crumbs').replaceChildren(...crumbs.map(([text, href]) =>
    h('li', {}, href ? h('a', { href }, text) : h('span', { 'aria-current': 'page' }, text))));
}

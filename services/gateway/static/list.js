// The workflows page (#/): every workflow, live from /api/events, and the upload form
// (a file, or the example archive).

import { ApiError, api, live, messageNodes, showError, toast } from './api.js';
import { $, bar, enc, h, parseTime, setBadge, showPage, stamp } from './dom.js';
import { RANK } from './jobstate.js';

export const countChips = (counts) => Object.entries(counts || {}).filter(([, n]) => n)
  .map(([s, n]) => h('span', { class: `chip s-${s}` }, `${n} ${s.toLowerCase()}`));
export const finished = (counts) => Object.entries(counts || {}).reduce((a, [s, n]) => a + (RANK[s] === 4 ? n : 0), 0);

export function listPage() {
  showPage('page-list', 'Workflows', ['Workflows']);
  const rows = new Map(), tbody = $('#wf-rows');
  // Deleted while the list loaded: the live stream can say so before GET answers with
  // its older list, which must not bring the row back.
  const gone = new Set();
  tbody.replaceChildren();  // rows of the last visit to this page are not this visit's
  const counted = () => { $('#wf-empty').hidden = rows.size > 0; };
  const render = (w) => {
    const done = finished(w.counts), jobs = w.jobs || 0, b = h('span');
    setBadge(b, w.state);
    const tr = h('tr', { 'data-wf': w.name },
      h('td', {}, h('a', { href: `#/wf/${enc(w.name)}` }, w.name)), h('td', {}, b),
      h('td', {}, bar().set(jobs ? (100 * done) / jobs : 0, `${done}/${jobs} jobs`, w.state)),
      h('td', {}, w.state === 'NEW' ? h('span', { class: 'muted' }, `${jobs} jobs, not run yet`) : countChips(w.counts)),
      h('td', { class: 'time' }, stamp(parseTime(w.started))), h('td', { class: 'time' }, stamp(parseTime(w.ended))));
    if (rows.has(w.name)) rows.get(w.name).replaceWith(tr); else tbody.append(tr);
    rows.set(w.name, tr);
    counted();
  };
  // The list adds what the stream does not send (workflows uploaded but never run) and,
  // after a reconnect, drops rows deleted meanwhile; rows the stream already drew are
  // newer than the list and stay as they are.
  const load = async () => {
    const before = new Set(rows.keys());
    try {
      const list = await api('api/workflows');
      const names = new Set(list.map((w) => w.name));
      for (const n of before) if (!names.has(n) && rows.has(n)) { rows.get(n).remove(); rows.delete(n); }
      list.filter((w) => !gone.has(w.name) && !rows.has(w.name)).forEach(render); counted();
    } catch (e) { showError(e); }
  };
  load();
  return { destroy: live('api/events', {
    workflow: (w) => { gone.delete(w.name); render(w); },
    deleted: (d) => { gone.add(d.name); rows.get(d.name)?.remove(); rows.delete(d.name); counted(); },
  }, load) };
}

function upload(file, filename, name, replace, large) {
  const form = new FormData();
  form.append('file', file, filename);
  if (name) form.append('name', name);
  if (replace) form.append('replace', 'true');
  if (large) form.append('allow_large', 'true');
  return api('api/workflows', { method: 'POST', body: form });
}
function uploadFailed(err) {
  $('#upload-error').replaceChildren(...messageNodes(err));
  $('#upload-error').hidden = false;
}
$('#upload-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const file = $('#upload-file').files[0], btn = $('#upload-submit');
  if (!file) return;
  $('#upload-error').hidden = true; btn.disabled = true;
  try {
    const wf = await upload(file, file.name, $('#upload-name').value.trim(), $('#upload-replace').checked,
      $('#upload-large').checked);
    e.target.reset();
    toast(`Uploaded ${wf.name}: ${wf.jobs.length} jobs`);
    location.hash = `#/wf/${enc(wf.name)}`;
  } catch (err) { uploadFailed(err); } finally { btn.disabled = false; }
});
// The example ships as a static archive (scripts/build-gui-example.sh), uploaded like any other.
$('#load-example').addEventListener('click', async () => {
  $('#upload-error').hidden = true;
  try {
    const res = await fetch('example-paper.tar.gz', { cache: 'no-store' });
    if (!res.ok) throw new ApiError(`The example archive is missing (${res.status})`, res.status);
    const wf = await upload(await res.blob(), 'paper.tar.gz').catch((err) => {
      if (err.status !== 409) throw err;
      return { name: 'paper', exists: true };
    });
    toast(wf.exists ? 'The example is loaded already' : `Loaded the example workflow '${wf.name}'`);
    location.hash = `#/wf/${enc(wf.name)}`;
  } catch (err) { uploadFailed(err); }
});

// jobmesh GUI. Routes: #/ (workflows), #/wf/NAME (table), #/wf/NAME/graph; ?job=JOB opens
// a job. Every URL is relative, so the page works at any host, port or path prefix.
// State comes from the REST API, then live from Server-Sent Events.

const $ = (sel) => document.querySelector(sel);
const RANK = { PENDING: 0, READY: 1, QUEUED: 2, RUNNING: 3, SUCCEEDED: 4, FAILED: 4, CANCELED: 4, SKIPPED: 4 };
const EVENT_STATE = { pending: 'PENDING', ready: 'READY', queued: 'QUEUED', started: 'RUNNING',
  succeeded: 'SUCCEEDED', failed: 'FAILED', canceled: 'CANCELED', skipped: 'SKIPPED' };
// cloudmesh-cc status words, which name the colours (libs/common/states.py)
const WORD = { PENDING: 'ready', READY: 'ready', QUEUED: 'submitted', RUNNING: 'running',
  SUCCEEDED: 'done', FAILED: 'failed', CANCELED: 'canceled', SKIPPED: 'skipped' };
const DEFAULT_COLORS = { ready: 'white', submitted: '#FFF2CC', running: '#CCE5FF', done: '#CCFFCC',
  failed: '#FFCCCC', canceled: '#E0E0E0', skipped: '#F2F2F2' };
const WF_DONE = new Set(['SUCCEEDED', 'FAILED', 'CANCELED']);
const TOKEN = 'jobmesh.token';
const enc = encodeURIComponent;

// ---------------------------------------------------------------- small helpers
function h(tag, attrs = {}, ...kids) {
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
const setText = (e, t) => { t = t == null ? '' : String(t); if (e.textContent !== t) e.textContent = t; };
const setAttr = (e, k, v) => { v = v == null ? '' : String(v); if (e.getAttribute(k) !== v) e.setAttribute(k, v); };
const setBadge = (e, state) => { e.className = `badge s-${state}`; setText(e, state.toLowerCase()); };
const pad = (n) => String(n).padStart(2, '0');
const clock = (ms) => (ms ? new Date(ms).toTimeString().slice(0, 8) : '');
const stamp = (ms) => (ms ? new Date(ms).toLocaleString() : '');
const parseTime = (iso) => (iso ? Date.parse(iso) : null);
function span(ms) {
  if (ms == null || ms < 0) return '';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  return s < 3600 ? `${Math.floor(s / 60)}m ${pad(s % 60)}s` : `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
}
// A progress bar (role=progressbar) with its label; bar.set(percent, message, state).
function bar() {
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
function kv(dl, pairs) {
  const kids = pairs.filter(([, v]) => v != null && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]);
  const key = kids.map((e) => e.textContent).join('\u0000');
  if (dl.dataset.key !== key) { dl.replaceChildren(...kids); dl.dataset.key = key; }
}
function save(blob, filename) {
  const a = h('a', { href: URL.createObjectURL(blob), download: filename });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
function showPage(id, title, ...crumbs) {
  for (const p of document.querySelectorAll('main > section')) p.hidden = p.id !== id;
  document.title = `${title} · jobmesh`;
  $('#crumbs').replaceChildren(...crumbs.map(([text, href]) =>
    h('li', {}, href ? h('a', { href }, text) : h('span', { 'aria-current': 'page' }, text))));
}

// ---------------------------------------------------------------- messages
function messageNodes(err) {
  const items = err.items?.length > 1 ? err.items : null;  // one issue is in the message already
  return [h('p', {}, items ? `${err.message.split(':')[0]}:` : err.message || String(err)),
    items ? h('ul', {}, items.map((i) => h('li', {}, i))) : ''];
}
function showError(err) {
  $('#alert-text').replaceChildren(...messageNodes(err));
  $('#alert').dataset.status = err.status ?? '';
  $('#alert').hidden = false;
}
$('#alert-close').addEventListener('click', () => { $('#alert').hidden = true; });
let toastTimer = 0;
function toast(text) {
  $('#toast').textContent = text; $('#toast').hidden = false;
  clearTimeout(toastTimer); toastTimer = setTimeout(() => { $('#toast').hidden = true; }, 4000);
}
function setOnline(up) {
  $('#conn').className = `conn ${up ? 'up' : 'down'}`;
  $('#conn').textContent = up ? 'Live' : 'Connection lost, reconnecting…';
  if (up && $('#alert').dataset.status === '0') $('#alert').hidden = true;  // "cannot reach" is over
}

// ---------------------------------------------------------------- REST, token, SSE
class ApiError extends Error {
  constructor(message, status, items) { super(message); this.status = status; this.items = items; }
}
// The API answers errors as {"detail": "..."} (422s add "errors"); show the words, never JSON.
async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  let text = body?.detail;
  if (typeof text !== 'string' || !text) text = `The server answered ${res.status} ${res.statusText}`.trim();
  const items = (body?.errors || []).map((e) => e.text || e.message).filter(Boolean);
  return new ApiError(text.charAt(0).toUpperCase() + text.slice(1), res.status, items);
}

let asking = null;
$('#token-cancel').addEventListener('click', () => $('#token-dialog').close('cancel'));
function askToken(refused) {
  asking ??= new Promise((resolve, reject) => {
    const dlg = $('#token-dialog');
    $('#token-text').textContent = refused ? 'That token was refused. Enter the access token of this jobmesh service.'
      : 'This jobmesh service needs an access token. It is kept in this browser.';
    $('#token-input').value = '';
    dlg.addEventListener('close', () => {
      asking = null;
      const value = $('#token-input').value.trim();
      if (dlg.returnValue === 'ok' && value) { localStorage.setItem(TOKEN, value); resolve(); }
      else reject(new ApiError('This service needs an access token; reload the page to enter it.', 401));
    }, { once: true });
    dlg.showModal();
  });
  return asking;
}

async function api(path, { method = 'GET', body, as = 'json' } = {}) {
  for (let tries = 0; ; tries++) {
    const token = localStorage.getItem(TOKEN);
    let res;
    try {
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      res = await fetch(path, { method, body, headers, cache: 'no-store' });
    } catch {
      throw new ApiError('Cannot reach the jobmesh service. Is it running? The page reconnects when it is back.', 0);
    }
    if (res.status === 401 && tries < 5) {
      if (localStorage.getItem(TOKEN) === token) await askToken(Boolean(token));  // else: a new one came meanwhile
      continue;
    }
    if (!res.ok) throw await errorOf(res);
    return as === 'json' ? res.json() : as === 'text' ? res.text() : res.blob();
  }
}

// Follow an SSE stream (the token goes as ?token=: EventSource sends no headers). After an
// error answer (a 502 while the gateway restarts) the browser gives up: we reconnect with a
// backoff, and with ?since=<the last event id> so that only later events come (EventSource's
// own reconnects send it as Last-Event-ID). onUp runs after each reconnect, to refresh the
// state shown.
function live(path, handlers, onUp) {
  let es, timer = 0, lost = false, stopped = false, delay = 500, lastId = '';
  const connect = () => {
    const url = typeof path === 'function' ? path() : path, token = localStorage.getItem(TOKEN);
    const query = [lastId && `since=${enc(lastId)}`, token && `token=${enc(token)}`].filter(Boolean).join('&');
    es = new EventSource(query ? `${url}${url.includes('?') ? '&' : '?'}${query}` : url);
    es.onopen = () => { delay = 500; setOnline(true); if (lost) { lost = false; onUp?.(); } };
    es.onerror = () => {
      if (stopped) return;
      if (!lost) { lost = true; setOnline(false); }
      if (es.readyState === EventSource.CLOSED) { timer = setTimeout(connect, delay); delay = Math.min(delay * 2, 5000); }
    };
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (e) => {
        if (e.lastEventId) lastId = e.lastEventId;
        if (!stopped) fn(JSON.parse(e.data), Number(e.lastEventId) || 0);
      });
    }
  };
  connect();
  return () => { stopped = true; clearTimeout(timer); es.close(); };
}

// ---------------------------------------------------------------- workflows page
const countChips = (counts) => Object.entries(counts || {}).filter(([, n]) => n)
  .map(([s, n]) => h('span', { class: `chip s-${s}` }, `${n} ${s.toLowerCase()}`));
const finished = (counts) => Object.entries(counts || {}).reduce((a, [s, n]) => a + (RANK[s] === 4 ? n : 0), 0);

function listPage() {
  showPage('page-list', 'Workflows', ['Workflows']);
  const rows = new Map(), tbody = $('#wf-rows');
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
  const load = async () => {
    try {
      const list = await api('api/workflows');
      tbody.replaceChildren(); rows.clear();
      list.forEach(render); counted();
    } catch (e) { showError(e); }
  };
  load();
  return { destroy: live('api/events', {
    workflow: render,
    deleted: (d) => { rows.get(d.name)?.remove(); rows.delete(d.name); counted(); },
  }, load) };
}

function upload(file, filename, name, replace) {
  const form = new FormData();
  form.append('file', file, filename);
  if (name) form.append('name', name);
  if (replace) form.append('replace', 'true');
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
    const wf = await upload(file, file.name, $('#upload-name').value.trim(), $('#upload-replace').checked);
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

// ---------------------------------------------------------------- graph labels
// The browser renders what changes during a run in jobmesh's label templates
// (libs/common/labels.py): states, progress, messages, times. A line naming anything else
// (a duration, an env var, a parent's output...) keeps the server's text until the next SVG.
function strftime(ms, fmt) {
  const d = new Date(ms), f = { Y: d.getFullYear(), y: pad(d.getFullYear() % 100), m: pad(d.getMonth() + 1),
    d: pad(d.getDate()), H: pad(d.getHours()), M: pad(d.getMinutes()), S: pad(d.getSeconds()), '%': '%' };
  return /%[^YymdHMS%]/.test(fmt) ? null : fmt.replace(/%(.)/g, (_, c) => f[c]);
}
function labelLines(j, wf) {
  const times = { now: Date.now(), created: wf.created, t0: wf.started, t1: wf.ended, tstart: j.started, tend: j.ended };
  const vals = { name: j.name, status: WORD[j.state], state: j.state, progress: Math.trunc(j.progress || 0),
    msg: j.msg, attempt: j.attempt, host: j.spec?.host || j.host, run_host: j.host, kind: j.kind, native_id: j.native_id, exit_code: j.exit_code,
    reason: j.reason, workflow: wf.name };
  const field = (expr) => {
    const [head, ...fmt] = expr.split('.');
    if (head === 'created' && !fmt.length && j.spec?.created != null) return String(j.spec.created);  // the YAML's string
    if (head in times) return times[head] == null ? 'N/A' : strftime(times[head], fmt.join('.') || '%m/%d/%Y, %H:%M:%S');
    return expr in vals ? (vals[expr] == null || vals[expr] === '' ? 'N/A' : String(vals[expr])) : null;
  };
  const tpl = (j.spec?.label_format || j.spec?.label || '{name}\\n{status} {progress}%').replaceAll('--', ':');
  return tpl.split(/\\n|\n/).map((line) => {
    if (line.includes('{{') || line.includes('}}')) return null;  // str.format escapes: the server's text
    const parts = line.split(/\{([^{}]*)\}/).map((p, i) => (i % 2 ? field(p) : p));  // odd parts: fields
    return parts.includes(null) ? null : parts.join('');
  });
}

// ---------------------------------------------------------------- job state
const COLUMNS = [
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

// Apply one job event as the monitor folds it (services/monitor/fold.py): an older attempt
// is ignored, a newer one starts afresh, states only move up in rank. True if j changed.
function applyEvent(j, ev) {
  if (ev.attempt < j.attempt) return false;
  if (ev.attempt > j.attempt) {
    Object.assign(j, { attempt: ev.attempt, state: 'PENDING', progress: 0, msg: null, started: null,
      ended: null, exit_code: null, reason: null, native_id: null });
  }
  if (ev.type === 'progress') {
    if (RANK[j.state] === 4) return false;
    if (ev.progress != null) j.progress = ev.progress;
    if (ev.msg != null) j.msg = ev.msg;
    return true;
  }
  const target = EVENT_STATE[ev.type];
  if (ev.type === 'queued' && j.state === 'QUEUED') {  // a batch system's new pending reason
    Object.assign(j, { reason: ev.reason ?? null, native_id: ev.native_id || j.native_id });
    return true;
  }
  if (!target || (target === 'PENDING' ? j.state !== 'PENDING' : RANK[target] <= RANK[j.state])) return false;
  j.state = target;
  if (target === 'QUEUED') {
    Object.assign(j, { reason: ev.reason ?? null, native_id: ev.native_id || j.native_id });
  } else if (target === 'RUNNING') {
    j.started ||= ev.time * 1000; j.host = ev.host || j.host; j.native_id = ev.native_id || j.native_id;
  } else if (RANK[target] === 4) {
    Object.assign(j, { ended: ev.time * 1000, exit_code: ev.exit_code ?? null, reason: ev.reason ?? null });
    if (ev.progress != null) j.progress = ev.progress;
    if (ev.msg != null) j.msg = ev.msg;
    if (target === 'SUCCEEDED') j.progress = 100;
  }
  return true;
}

// ---------------------------------------------------------------- one workflow
class WorkflowPage {
  constructor(name) {
    Object.assign(this, { name, jobs: new Map(), run: null, state: 'NEW', colors: DEFAULT_COLORS, dirty: new Set(),
      raf: 0, sort: { key: 'id', dir: 1 }, detail: null, tab: 'table', svgAt: 0, timers: {} });
    this.ac = new AbortController();
    this.base = `api/workflows/${enc(name)}`;
    showPage('page-wf', name, ['Workflows', '#/'], [name]);
    setText($('#wf-title'), name);
    $('#jobs-rows').replaceChildren(); $('#graph').replaceChildren(); $('#graph-msg').hidden = true;
    $('#filter').value = ''; $('#state-filter').value = '';
    this.tableControls(); this.graphControls(); this.actionControls();
    this.stop = live(`${this.base}/events`, { job: (e, id) => this.onJob(e, id), workflow: (s) => this.onWorkflow(s) },
      () => { this.refresh(); if (this.svg) this.loadGraph(); });
    this.ticker = setInterval(() => this.tick(), 1000);
    this.refresh();
  }
  on(el, type, fn) { el.addEventListener(type, fn, { signal: this.ac.signal }); }
  href(job, tab = this.tab) {
    return `#/wf/${enc(this.name)}${tab === 'graph' ? '/graph' : ''}${job ? `?job=${enc(job)}` : ''}`;
  }
  get running() { return Boolean(this.run) && !WF_DONE.has(this.state); }
  destroy() {
    this.dead = true;
    this.stop(); this.ac.abort(); clearInterval(this.ticker); cancelAnimationFrame(this.raf);
    Object.values(this.timers).forEach(clearTimeout);
    this.closeDetail();
  }
  show(tab, job) {  // the router calls this for every hash of this workflow
    this.tab = tab;
    for (const t of ['table', 'graph']) {
      $(`#tab-${t}`).setAttribute('aria-selected', t === tab); $(`#tab-${t}`).tabIndex = t === tab ? 0 : -1;
      $(`#panel-${t}`).hidden = t !== tab;
    }
    if (tab === 'graph' && (!this.svg || (this.stale && Date.now() - this.svgAt > 5000))) this.loadGraph();
    if (tab === 'table') { this.window = null; this.renderWindow(); }
    this.wanted = job;
    if (!job) this.closeDetail(); else if (this.jobs.size) this.openJob(job);
  }

  // -- state: a full load now and then, live events in between
  async refresh() {
    if (this.loading) { this.again = true; return; }
    this.loading = true;
    try {
      const snaps = this.snaps;
      const doc = await api(this.base);
      if (!this.dead) this.load(doc, this.snaps !== snaps);
    } catch (e) {
      if (this.dead) return;
      if (e.status !== 404) { showError(e); return; }
      showPage('page-missing', 'Not found', ['Workflows', '#/'], [this.name]);
      setText($('#missing-text'), e.message);
    } finally {
      this.loading = false;
      if (this.again && !this.dead) { this.again = false; this.refresh(); }
    }
  }
  later(key, ms, fn) {  // run fn once, ms from now, however often this is asked meanwhile
    if (!this.timers[key]) this.timers[key] = setTimeout(() => { this.timers[key] = 0; if (!this.dead) fn(); }, ms);
  }
  refreshSoon(ms = 150) { this.later('refresh', ms, () => this.refresh()); }

  load({ spec, status }, raced) {  // raced: a snapshot came by SSE while this answer was on its way
    this.loadedAt = performance.now();
    const sameRun = status?.run && status.run === this.run;
    this.colors = spec?.colors || DEFAULT_COLORS;
    if (!(sameRun && raced)) {  // else the snapshot shown is newer than this answer
      this.state = status?.state ?? 'NEW';
      [this.created, this.started, this.ended] = [status?.created, status?.started, status?.ended].map(parseTime);
    }
    this.run = status?.run ?? null;
    const names = Object.keys(spec?.jobs || status?.jobs || {});
    const same = names.length === this.jobs.size && names.every((n) => this.jobs.has(n));
    const jobs = new Map();
    names.forEach((n, i) => {
      const s = status?.jobs?.[n] || {}, js = spec?.jobs?.[n] || {}, old = same && this.jobs.get(n);
      const j = Object.assign(old || { name: n }, { id: i + 1, spec: js, kind: s.kind || js.kind || 'local' });
      // the answer may be older than the events shown (it has no seq): it must not undo them
      const attempt = s.attempt || 1, state = s.state || 'PENDING', mine = old && sameRun && old.attempt === attempt;
      const ahead = mine && old.state === state && old.progress > (s.progress || 0);
      if (!(old && sameRun && (old.attempt > attempt || (mine && RANK[old.state] > RANK[state])))) {
        Object.assign(j, { state, attempt, progress: ahead ? old.progress : s.progress || 0, msg: ahead ? old.msg : s.msg ?? null,
          started: parseTime(s.started), ended: parseTime(s.ended), native_id: s.native_id ?? null,
          exit_code: s.exit_code ?? null, reason: s.reason ?? null });
      }
      j.host = s.host || j.host || (js.host?.includes('{') ? null : js.host);
      jobs.set(n, j);
    });
    this.jobs = jobs;
    if (!same) { this.buildRows(); this.svg = null; if (this.tab === 'graph') this.loadGraph(); }
    $('#jobs').classList.toggle('big', jobs.size > 200);
    jobs.forEach((j) => this.mark(j));
    this.renderLegend();
    this.applyOrder();
    if (this.wanted && !this.detail) this.openJob(this.wanted);
    else if (this.detail) { this.fetchDetail(); this.startLog(); }
  }
  // Job events and snapshots come on one stream but from two sources, so either may be
  // ahead: a job event's id and a snapshot's seq are both positions in the EVENTS log.
  onJob(ev, id) {
    if (ev.run !== this.run) { if (!this.run || ev.run > this.run) this.refreshSoon(); return; }  // run ids sort by time
    const j = this.jobs.get(ev.job);
    if (!j) { this.refreshSoon(); return; }
    this.lastId = Math.max(this.lastId || 0, id);
    if (ev.type === 'progress' && id <= this.seq) return;  // the snapshot shown has it already
    if (ev.type === 'started' && !this.started) this.started = ev.time * 1000;
    if (applyEvent(j, ev)) this.mark(j);
    if (this.detail?.job === ev.job && ev.type !== 'progress') this.later('detail', 300, () => this.fetchDetail());
  }
  onWorkflow(s) {  // a snapshot: usually a little behind the job events, but misses none
    if (s.run !== this.run) { if (!this.run || s.run > this.run) this.refreshSoon(); return; }
    const was = this.state, newer = s.seq >= (this.lastId || 0);
    this.snaps = (this.snaps || 0) + 1;
    let missed = false;
    this.seq = Math.max(this.seq || 0, s.seq);
    this.state = s.state;
    if (!WF_DONE.has(s.state)) this.ended = null;
    for (const [n, x] of Object.entries(s.jobs)) {
      const j = this.jobs.get(n);
      if (!j || x.attempt < j.attempt) continue;
      let changed = x.attempt > j.attempt && applyEvent(j, { type: 'pending', attempt: x.attempt });
      const moved = RANK[x.state] > RANK[j.state];  // the job's own event has not come yet
      if (moved) { j.state = x.state; changed = true; missed ||= RANK[x.state] >= 3; }
      if ((newer || moved) && x.state === j.state && (x.progress !== j.progress || x.msg !== j.msg)) {
        Object.assign(j, { progress: x.progress, msg: x.msg }); changed = true;
      }
      if (changed) this.mark(j);
    }
    this.schedule();
    // for the times of events this page missed (while it reloaded, or was away), now and then
    if (missed && performance.now() - this.loadedAt > Math.max(5000, this.jobs.size * 10)) this.refreshSoon(1000);
    if (WF_DONE.has(s.state) && !WF_DONE.has(was)) {
      this.ended = Math.max(0, ...[...this.jobs.values()].map((j) => j.ended || 0)) || Date.now();
      this.jobs.forEach((j) => this.mark(j));
      this.refreshSoon();
      // the monitor stores the final graph within a second
      this.later('graph', 1200, () => { if (this.svg || this.tab === 'graph') this.loadGraph(); });
    }
  }

  // -- rendering: changed jobs are marked, and drawn once per animation frame
  mark(j) { this.dirty.add(j); this.schedule(); }
  schedule() {  // big workflows get fewer, larger frames: at most one per jobs/3 ms (400 ms at most)
    if (this.raf || this.timers.flush) return;
    const wait = (this.flushed || 0) + Math.min(400, this.jobs.size / 3) - performance.now();
    if (wait > 0) this.later('flush', wait, () => this.schedule());
    else this.raf = requestAnimationFrame(() => this.flush());
  }
  flush() {
    this.raf = 0; this.flushed = performance.now();
    const d = this.detail, open = d && this.jobs.get(d.job);
    for (const j of this.dirty) { this.renderRow(j); this.paintNode(j); }
    if (open && this.dirty.has(open)) {
      this.renderDetailLive();
      if (!d.stop && (d.logAttempt !== open.attempt || !d.logDone)) this.startLog();
    }
    if (this.dirty.size) this.stale = true;
    this.dirty.clear();
    this.renderHead();
    if (!['id', 'name', 'kind'].includes(this.sort.key) || $('#filter').value || $('#state-filter').value) {
      this.later('order', 1000, () => this.applyOrder());  // re-sort and re-filter at most once a second
    }
  }
  tick() {
    if (!this.running) return;
    for (const j of this.jobs.values()) {
      if (j.state === 'RUNNING' && j.started) setText(j.cells.duration, span(Date.now() - j.started));
    }
    this.renderHead();
    if (this.detail) this.renderDetailLive();
    const every = this.svg ? 5000 : 2000;  // no graph yet: the monitor draws it as the run starts
    if (this.tab === 'graph' && (this.stale || !this.svg) && Date.now() - this.svgAt > every) this.loadGraph();
  }
  renderHead() {
    const counts = {};
    for (const j of this.jobs.values()) counts[j.state] = (counts[j.state] || 0) + 1;
    const total = this.jobs.size, done = finished(counts);
    setBadge($('#wf-state'), this.state);
    WF_BAR.set(total ? (100 * done) / total : 0, `${done} of ${total} jobs finished`, this.state);
    const chips = this.run ? countChips(counts) : [h('span', { class: 'muted' }, `${total} jobs, not run yet`)];
    const key = chips.map((c) => c.textContent).join();
    const box = $('#wf-counts');
    if (box.dataset.key !== key) { box.replaceChildren(...chips); box.dataset.key = key; }
    kv($('#wf-meta'), [['Run', this.run], ['Started', stamp(this.started)], ['Ended', stamp(this.ended)],
      ['Duration', this.started ? span((this.ended || Date.now()) - this.started) : '']]);
    const busy = (id) => $(`#act-${id}`).hasAttribute('aria-busy');
    $('#act-run').disabled = this.running || busy('run');
    $('#act-cancel').disabled = !this.running || busy('cancel');
    $('#act-retry').disabled = !['FAILED', 'CANCELED'].includes(this.state) || busy('retry');
    $('#act-delete').disabled = busy('delete');
  }

  // -- actions
  async act(id, fn, done) {
    const btn = $(`#act-${id}`);
    btn.disabled = true; btn.setAttribute('aria-busy', 'true');
    try { await fn(); if (done) toast(done); } catch (e) { showError(e); } finally {
      btn.removeAttribute('aria-busy'); if (!this.dead) this.renderHead();
    }
  }
  async remove() {
    const dlg = $('#confirm'), running = this.running;
    $('#confirm-text').textContent = running
      ? `'${this.name}' is running. Deleting it cancels its jobs and removes the workflow and its state.`
      : `This removes '${this.name}', its uploaded files and its state. Run directories stay on disk.`;
    dlg.returnValue = '';
    dlg.showModal();
    await new Promise((r) => dlg.addEventListener('close', r, { once: true }));
    if (dlg.returnValue !== 'ok') return;
    await this.act('delete', async () => {
      await api(`${this.base}${running ? '?force=true' : ''}`, { method: 'DELETE' });
      location.hash = '#/';
    }, `Deleted ${this.name}`);
  }
  actionControls() {
    const on = (id, fn) => this.on($(id), 'click', fn), post = (what) => api(`${this.base}/${what}`, { method: 'POST' });
    on('#act-run', () => this.act('run', async () => { await post('run'); await this.refresh(); }, 'Started'));
    on('#act-cancel', () => this.act('cancel', () => post('cancel'), 'Cancel requested'));
    on('#act-retry', () => this.act('retry', async () => { await post('retry'); this.refreshSoon(); },
      'Retrying the jobs that did not succeed'));
    on('#act-delete', () => this.remove());
    const download = (id, path, file) => on(`#act-${id}`, () => this.act(id, async () => save(await api(path, { as: 'blob' }), file)));
    download('yaml', `${this.base}?format=yaml`, `${this.name}.yaml`);
    download('svg', `${this.base}/graph.svg`, `${this.name}.svg`);
    for (const t of ['table', 'graph']) on(`#tab-${t}`, () => { location.hash = this.href(this.wanted, t); });
    this.on($('.tabs'), 'keydown', (e) => {  // arrow keys move between the tabs
      const other = this.tab === 'table' ? 'graph' : 'table';
      const t = { ArrowLeft: other, ArrowRight: other, Home: 'table', End: 'graph' }[e.key];
      if (t) { location.hash = this.href(this.wanted, t); $(`#tab-${t}`).focus(); }
    });
    on('#detail-close', () => { location.hash = this.href(null); });
    this.on(document, 'keydown', (e) => {
      if (e.key === 'Escape' && this.detail && !document.querySelector('dialog[open]')) location.hash = this.href(null);
    });
  }

  // -- table
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
  buildRows() {
    for (const j of this.jobs.values()) {
      const c = j.cells = {};
      j.row = h('tr', { 'data-job': j.name }, COLUMNS.map((col) => (c[col.key] = h('td', { 'data-col': col.key }))));
      c.name.append(h('a', { href: this.href(j.name, 'table') }, j.name));
      c.state.append(j.badge = h('span'));
      c.progress.append(j.bar = bar());
    }
    this.window = null;  // rows are attached by renderWindow when in view
  }
  renderRow(j) {
    const c = j.cells;
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
    $('#jobs-rows').replaceChildren(SPACERS[0], ...rows.map((j) => j.row), SPACERS[1]);
    rows.forEach((j, i) => setAttr(j.row, 'aria-rowindex', first + i + 2));
    setAttr($('#jobs'), 'aria-rowcount', order.length + 1);
    if (!this.rowH && rows.length) this.rowH = rows[0].row.offsetHeight || 37;
  }

  // -- graph: the server's SVG, recoloured and relabelled in place from the live state;
  // fetched again at most every 5 s while it changes, and once at the end of a run
  async loadGraph() {
    if (this.graphBusy) { this.graphAgain = true; return; }
    this.graphBusy = true; this.svgAt = Date.now(); this.stale = false;
    try {
      const text = await api(`${this.base}/graph.svg`, { as: 'text' });
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
  graphControls() {  // zoom, pan and fit; a click or Enter on a node opens the job
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
      if (node && !this.dragged) location.hash = this.href(node.dataset.job, 'graph');
    });
    this.on(g, 'keydown', (e) => {
      const node = e.target.closest?.('g[data-job]'), v = this.view;
      if (node && (e.key === 'Enter' || e.key === ' ')) {
        e.preventDefault(); location.hash = this.href(node.dataset.job, 'graph'); return;
      }
      const step = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] }[e.key];
      if (!v) return;
      if (step) this.setView({ ...v, x: v.x + step[0] * v.w, y: v.y + step[1] * v.h });
      else if (e.key === '+' || e.key === '=') this.zoom(0.8);
      else if (e.key === '-') this.zoom(1.25);
      else if (e.key === '0') this.setView(this.home);
      else return;
      e.preventDefault();
    });
  }

  // -- job detail: attributes, timings and outputs, and the log, followed while it grows
  openJob(name) {
    const j = this.jobs.get(name);
    if (!j) { showError(new ApiError(`Workflow '${this.name}' has no job '${name}'`, 404)); return; }
    if (this.detail?.job === name) return;
    const back = document.activeElement;
    this.closeDetail();
    this.detail = { job: name, back };
    $('#detail').hidden = false; document.body.classList.add('with-detail');
    setText($('#detail-title'), name);
    document.querySelectorAll('#detail dl, #d-log').forEach((e) => { e.replaceChildren(); delete e.dataset.key; });
    setText($('#d-logstate'), '');
    j.row?.classList.add('selected'); j.node?.classList.add('selected');
    this.renderDetailLive();
    this.fetchDetail();
    this.startLog();
    $('#detail').focus({ preventScroll: true });
  }
  closeDetail() {
    const d = this.detail;
    if (!d) return;
    d.stop?.(); clearTimeout(d.retry); clearTimeout(this.timers.detail); this.timers.detail = 0;
    this.detail = null;
    const inside = $('#detail').contains(document.activeElement);
    $('#detail').hidden = true; document.body.classList.remove('with-detail');
    for (const e of document.querySelectorAll('.selected')) e.classList.remove('selected');
    if (inside && d.back?.isConnected) d.back.focus();
  }
  async fetchDetail() {
    const d = this.detail;
    try {
      const info = d && await api(`${this.base}/jobs/${enc(d.job)}`);
      if (info && this.detail === d) { d.info = info; this.renderDetailInfo(); }
    } catch (e) { if (this.detail === d) showError(e); }
  }
  renderDetailLive() {
    const j = this.jobs.get(this.detail.job);
    setBadge($('#d-state'), j.state);
    DETAIL_BAR.set(j.progress, j.msg, j.state);
    const past = (this.detail.info?.status?.attempts || []).map((a) => [`Attempt ${a.attempt}`, a.state?.toLowerCase()]);
    kv($('#d-times'), [['Started', stamp(j.started)], ['Ended', stamp(j.ended)],
      ['Duration', j.started ? span((j.ended || Date.now()) - j.started) : ''], ...past]);
  }
  renderDetailInfo() {
    const { spec = {}, status = {}, parents = [] } = this.detail.info, j = this.jobs.get(this.detail.job);
    kv($('#d-attrs'), [['Kind', status.kind || spec.kind], ['Host', status.host || spec.host],
      ['Attempt', j.attempt], ['Exit code', status.exit_code], ['Reason', status.reason],
      ['Native ID', status.native_id], ['Script', spec.script], ['Command', spec.exec],
      ['Arguments', spec.args?.join(' ')], ['Parents', parents.join(', ')], ['Timeout', spec.timeout],
      ['Retries', spec.retries || null], ['Run directory', status.run_dir]]);
    const outs = Object.entries(status.outputs || {});
    kv($('#d-outputs'), outs.map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
    if (!outs.length) $('#d-outputs').replaceChildren(h('dd', { class: 'none' }, 'none yet'));
    this.renderDetailLive();
  }
  async startLog() {  // the tail first (GET .../log?tail=), then the stream from its end
    const d = this.detail, j = d && this.jobs.get(d.job);
    if (!j || d.stop || d.loading || (d.logAttempt === j.attempt && d.logDone)) return;
    if (!j.started && RANK[j.state] < 3) { setText($('#d-logstate'), 'waits for the job to start'); return; }
    if (d.logAttempt !== j.attempt) {  // a new attempt has a new log
      $('#d-log').replaceChildren();
      Object.assign(d, { offset: 0, logAttempt: j.attempt, logDone: false });
    }
    d.loading = true;
    const url = `${this.base}/jobs/${enc(d.job)}/log`;
    try {
      const r = await api(d.offset ? `${url}?offset=${d.offset}` : `${url}?tail=2000`);
      if (this.detail !== d) return;
      appendLog(r.data); d.offset = r.next_offset;
      if (r.done) { d.logDone = true; setText($('#d-logstate'), 'complete'); return; }
      setText($('#d-logstate'), 'following');
      d.stop = live(() => `${url}/stream?offset=${d.offset}`, {
        log: (m) => { appendLog(m.data); d.offset = m.offset; },
        end: (m) => {
          d.stop(); d.stop = null; d.logDone = true;
          setText($('#d-logstate'), `complete (${m.state.toLowerCase()})`); this.fetchDetail();
        },
      });
    } catch (e) {
      if (this.detail !== d) return;
      setText($('#d-logstate'), e.message);
      // 404 while it runs: the state does not know its run directory yet; 0: the service is away
      if (e.status === 0 || (e.status === 404 && RANK[j.state] < 4)) d.retry = setTimeout(() => this.startLog(), 1000);
    } finally { d.loading = false; }
  }
}

// While following, the log stays scrolled to its end, also when the panel around it resizes.
const pinLog = () => { if ($('#d-follow').checked) $('#d-log').scrollTop = $('#d-log').scrollHeight; };
new ResizeObserver(pinLog).observe($('#d-log'));
function appendLog(text) {
  const pre = $('#d-log');
  if (!text) return;
  pre.append(text);
  if (pre.textContent.length > 500000) pre.textContent = pre.textContent.slice(-400000);
  pinLog();
}

// ---------------------------------------------------------------- router
const WF_BAR = bar(), DETAIL_BAR = bar();
const SPACERS = [0, 1].map(() => h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: COLUMNS.length })));
$('#wf-bar').append(WF_BAR); $('#d-bar').append(DETAIL_BAR);
let page = null;
function route() {
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'wf' && parts[1]) {
    if (!(page instanceof WorkflowPage && page.name === parts[1])) { page?.destroy(); page = new WorkflowPage(parts[1]); }
    page.show(parts[2] === 'graph' ? 'graph' : 'table', new URLSearchParams(query).get('job'));
  } else if (!page || page instanceof WorkflowPage) {
    page?.destroy(); page = listPage();
  }
}
window.addEventListener('hashchange', route);
route();

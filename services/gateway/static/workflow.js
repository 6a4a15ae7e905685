// One workflow's page (#/wf/NAME...): its state, from a full load now and then and the
// live events in between; changed jobs drawn once per animation frame; the head (state,
// counts, bar, times) and the actions. The table (table.js), the graph (graph.js), the job
// detail (detail.js) and the keyboard (keys.js) are its other parts.

import { api, live, showError, toast } from './api.js';
import { DetailView } from './detail.js';
import { $, bar, enc, h, kv, parseTime, save, setBadge, setText, showPage, span, stamp } from './dom.js';
import { GraphView } from './graph.js';
import { Groups } from './groups.js';
import { applyEvent, DEFAULT_COLORS, RANK } from './jobstate.js';
import { keyboard, TABS } from './keys.js';
import { countChips, finished } from './list.js';
import { banner, showRuns } from './runs.js';
import { TableView } from './table.js';
import { QueueTimes, Timeline } from './timeline.js';

const WF_DONE = new Set(['SUCCEEDED', 'FAILED', 'CANCELED']);
const WF_BAR = bar();
$('#wf-bar').append(WF_BAR);

export class WorkflowPage {
  constructor(name) {
    Object.assign(this, { name, jobs: new Map(), run: null, state: 'NEW', colors: DEFAULT_COLORS, dirty: new Set(),
      raf: 0, sort: { key: 'id', dir: 1 }, detail: null, tab: 'table', svgAt: 0, timers: {} });
    this.ac = new AbortController();
    this.base = `api/workflows/${enc(name)}`;
    showPage('page-wf', name, ['Workflows', '#/'], [name]);
    setText($('#wf-title'), name);
    $('#jobs-rows').replaceChildren(); $('#graph').replaceChildren(); $('#graph-msg').hidden = true;
    $('#filter').value = ''; $('#state-filter').value = '';
    this.tableControls(); this.graphControls(); this.actionControls(); keyboard(this);
    this.timeline = new Timeline(this, $('#timeline'), $('#tl-tip')); this.qtimes = new QueueTimes();
    this.groups = new Groups(this, $('#group-panel'));
    $('#timeline').replaceChildren(); $('#runs').replaceChildren(); banner($('#run-banner'), name, null);
    this.stop = live(`${this.base}/events`, { job: (e, id) => this.onJob(e, id), workflow: (s) => this.onWorkflow(s) },
      () => { this.refresh(); if (this.svg) this.loadGraph(); });
    this.ticker = setInterval(() => this.tick(), 1000);
    this.refresh();
  }
  on(el, type, fn) { el.addEventListener(type, fn, { signal: this.ac.signal }); }
  href(job, tab = this.tab, run = this.pinned) {
    const q = [run && `run=${enc(run)}`, job && `job=${enc(job)}`].filter(Boolean).join('&');
    return `#/wf/${enc(this.name)}${tab === 'table' ? '' : `/${tab}`}${q ? `?${q}` : ''}`;
  }
  get running() { return Boolean(this.run) && !WF_DONE.has(this.state); }
  destroy() {
    this.dead = true;
    this.stop(); this.ac.abort(); clearInterval(this.ticker); cancelAnimationFrame(this.raf);
    Object.values(this.timers).forEach(clearTimeout);
    this.closeDetail();
  }
  show(tab, job, run = null) {  // the router calls this for every hash of this workflow
    this.tab = tab;
    if (run !== (this.pinned ?? null)) {  // another run: a past one (frozen), or the current one
      this.pinned = run; this.run = null; this.jobs = new Map(); this.svg = null; this.closeDetail();
      $('#jobs-rows').replaceChildren(); $('#graph').replaceChildren(); banner($('#run-banner'), this.name, null);
      this.refresh();
    }
    for (const t of TABS) {
      $(`#tab-${t}`).setAttribute('aria-selected', t === tab); $(`#tab-${t}`).tabIndex = t === tab ? 0 : -1;
      $(`#panel-${t}`).hidden = t !== tab;
    }
    if (tab === 'graph' && (!this.svg || (this.stale && Date.now() - this.svgAt > 5000))) this.loadGraph();
    if (tab === 'table') { this.window = null; this.renderWindow(); }
    if (tab === 'timeline') this.timeline.update(true);
    if (tab === 'runs') this.loadRuns();
    this.wanted = job;
    if (!job) this.closeDetail(); else if (this.jobs.size) this.openJob(job);
  }

  // -- state: a full load now and then, live events in between
  async refresh() {
    if (this.loading) { this.again = true; return; }
    this.loading = true;
    try {
      const snaps = this.snaps, pinned = this.pinned;
      const doc = await api(pinned ? `${this.base}/runs/${enc(pinned)}` : this.base);
      if (!this.dead && pinned === this.pinned) this.load(doc, this.snaps !== snaps);
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
  // An event or snapshot of a run other than the one shown: reload, unless that run is
  // older. Run ids sort by their second only (20261123T143012-3fa20c1d), so two runs started
  // within one second are told apart by the runs this page has seen replaced.
  otherRun(run) {
    const stamp = (r) => r.replace(/-[0-9a-f]+$/, '');
    if (!this.run || !(this.past?.has(run) || stamp(run) < stamp(this.run))) this.refreshSoon();
  }

  load({ spec, status, queued }, raced) {  // raced: a snapshot came by SSE while this answer was on its way
    this.loadedAt = performance.now();
    const sameRun = status?.run && status.run === this.run;
    this.colors = spec?.colors || (this.pinned ? this.colors : DEFAULT_COLORS);
    if (!(sameRun && raced)) {  // else the snapshot shown is newer than this answer
      this.state = status?.state ?? 'NEW';
      [this.created, this.started, this.ended] = [status?.created, status?.started, status?.ended].map(parseTime);
    }
    if (this.run && status?.run && status.run !== this.run) (this.past ||= new Set()).add(this.run);
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
          exit_code: s.exit_code ?? null, reason: s.reason ?? null, attempts: s.attempts || [] });
      }
      j.host = s.host || j.host || (js.host?.includes('{') ? null : js.host);
      jobs.set(n, j);
    });
    this.jobs = jobs;
    if (queued) this.qtimes.load(this.run, queued, jobs.values());
    if (this.pinned) banner($('#run-banner'), this.name, this.pinned, this.state, this.ended);
    if (this.tab === 'timeline') this.timeline.update(true);
    if (this.tab === 'runs' && !sameRun) this.loadRuns();  // a new run started
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
    this.qtimes.note(ev);
    if (this.pinned) return;  // a past run does not change
    if (ev.run !== this.run) { this.otherRun(ev.run); return; }
    const j = this.jobs.get(ev.job);
    if (!j) { this.refreshSoon(); return; }
    this.lastId = Math.max(this.lastId || 0, id);
    if (ev.type === 'progress' && id <= this.seq) return;  // the snapshot shown has it already
    if (ev.type === 'started' && !this.started) this.started = ev.time * 1000;
    if (ev.attempt > j.attempt && j.started) {  // the attempt that ends here stays on the timeline
      (j.attempts ||= []).push({ attempt: j.attempt, state: j.state, started: j.started / 1000, ended: (j.ended || ev.time * 1000) / 1000 });
    }
    if (applyEvent(j, ev)) this.mark(j);
    if (this.detail?.job === ev.job && ev.type !== 'progress') this.later('detail', 300, () => this.fetchDetail());
  }
  onWorkflow(s) {  // a snapshot: usually a little behind the job events, but misses none
    if (this.pinned) { if (this.tab === 'runs') this.later('runs', 1000, () => this.loadRuns()); return; }
    if (s.run !== this.run) { this.otherRun(s.run); return; }
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
      if (x.started && !j.started && x.attempt === j.attempt) { j.started = x.started * 1000; changed = true; }
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
      if (this.tab === 'runs') this.later('runs', 500, () => this.loadRuns());
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
    let inGroup = false;
    for (const j of this.dirty) { this.renderRow(j); this.paintNode(j); inGroup = this.groups.paint(j) || inGroup; }
    if (inGroup) this.groups.count();
    if (open && this.dirty.has(open)) {
      this.renderDetailLive();
      if (!d.stop && (d.logAttempt !== open.attempt || !d.logDone)) this.startLog();
    }
    if (this.dirty.size) this.stale = true;
    if (this.dirty.size && this.tab === 'timeline') this.timeline.update();
    this.dirty.clear();
    this.renderHead();
    if (!['id', 'name', 'kind'].includes(this.sort.key) || $('#filter').value || $('#state-filter').value) {
      this.later('order', 1000, () => this.applyOrder());  // re-sort and re-filter at most once a second
    }
  }
  tick() {
    if (!this.running || this.pinned) return;
    if (this.tab === 'timeline') this.timeline.update();
    for (const j of this.jobs.values()) {
      if (j.state === 'RUNNING' && j.started && j.cells) setText(j.cells.duration, span(Date.now() - j.started));
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
    $('#act-retry').disabled = Boolean(this.pinned) || !['FAILED', 'CANCELED'].includes(this.state) || busy('retry');
    $('#act-delete').disabled = busy('delete');
  }

  async loadRuns() {
    try { await showRuns($('#runs'), api, this.name, this.pinned); } catch (e) { if (!this.dead) showError(e); }
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
    on('#act-run', () => this.act('run', async () => {  // a past run's page goes to the new run
      await post('run'); if (this.pinned) location.hash = this.href(null, this.tab, null); else await this.refresh();
    }, 'Started'));
    on('#act-cancel', () => this.act('cancel', () => post('cancel'), 'Cancel requested'));
    on('#act-retry', () => this.act('retry', async () => { await post('retry'); this.refreshSoon(); },
      'Retrying the jobs that did not succeed'));
    on('#act-delete', () => this.remove());
    const download = (id, path, file) => on(`#act-${id}`, () => this.act(id, async () => save(await api(path, { as: 'blob' }), file)));
    download('yaml', `${this.base}?format=yaml`, `${this.name}.yaml`);
    download('svg', `${this.base}/graph.svg`, `${this.name}.svg`);
    for (const t of TABS) on(`#tab-${t}`, () => { location.hash = this.href(this.wanted, t); });
    on('#detail-close', () => { location.hash = this.href(null); });
  }
}

// the parts in the other modules, as methods of the page
for (const part of [TableView, GraphView, DetailView]) {
  for (const [key, desc] of Object.entries(Object.getOwnPropertyDescriptors(part.prototype))) {
    if (key !== 'constructor') Object.defineProperty(WorkflowPage.prototype, key, desc);
  }
}

// The job detail beside a view: attributes, timings and outputs, and the job's log,
// followed while it grows (a past run's job: what its run kept).
// Methods of WorkflowPage (workflow.js), which copies them onto its prototype.

import { ApiError, api, live, showError } from './api.js';
import { $, bar, enc, h, kv, setBadge, setText, span, stamp } from './dom.js';
import { RANK } from './jobstate.js';

const DETAIL_BAR = bar();
$('#d-bar').append(DETAIL_BAR);

export class DetailView {
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
    if (this.pinned) { this.pastDetail(d); return; }
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
  async pastDetail(d) {  // a past run's job: what its run kept; its log stays in its run directory
    const doc = d && await api(`${this.base}/runs/${enc(this.pinned)}`).catch((e) => { showError(e); return null; });
    const status = doc?.status?.jobs?.[d.job];
    if (!status || this.detail !== d) return;
    d.info = { status, spec: {}, parents: [] }; this.renderDetailInfo();
    setText($('#d-logstate'), status.log ? `a past run: its log is ${status.log}` : 'a past run: no log');
  }
  async startLog() {  // the tail first (GET .../log?tail=), then the stream from its end
    const d = this.detail, j = d && this.jobs.get(d.job);
    if (this.pinned) return;
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

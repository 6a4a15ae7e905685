// What the GUI knows of job states, shared by its modules: ranks, the event -> state table,
// the colour words, applying a live job event (as services/monitor/fold.py does), and the
// label templates the graph's nodes show.

const pad = (n) => String(n).padStart(2, '0');
export const RANK = { PENDING: 0, READY: 1, QUEUED: 2, RUNNING: 3, SUCCEEDED: 4, FAILED: 4, CANCELED: 4, SKIPPED: 4 };
export const EVENT_STATE = { pending: 'PENDING', ready: 'READY', queued: 'QUEUED', started: 'RUNNING',
  succeeded: 'SUCCEEDED', failed: 'FAILED', canceled: 'CANCELED', skipped: 'SKIPPED' };
// cloudmesh-cc status words, which name the colours (libs/common/states.py)
export const WORD = { PENDING: 'ready', READY: 'ready', QUEUED: 'submitted', RUNNING: 'running',
  SUCCEEDED: 'done', FAILED: 'failed', CANCELED: 'canceled', SKIPPED: 'skipped' };
export const DEFAULT_COLORS = { ready: 'white', submitted: '#FFF2CC', running: '#CCE5FF', done: '#CCFFCC',
  failed: '#FFCCCC', canceled: '#E0E0E0', skipped: '#F2F2F2' };

// The browser renders what changes during a run in jobmesh's label templates
// (libs/common/labels.py): states, progress, messages, times. A line naming anything else
// (a duration, an env var, a parent's output...) keeps the server's text until the next SVG.
export function strftime(ms, fmt) {
  const d = new Date(ms), f = { Y: d.getFullYear(), y: pad(d.getFullYear() % 100), m: pad(d.getMonth() + 1),
    d: pad(d.getDate()), H: pad(d.getHours()), M: pad(d.getMinutes()), S: pad(d.getSeconds()), '%': '%' };
  return /%[^YymdHMS%]/.test(fmt) ? null : fmt.replace(/%(.)/g, (_, c) => f[c]);
}
export function labelLines(j, wf) {
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

// Apply one job event as the monitor folds it (libs/common/jobfold.py; both are checked
// against tests/fixtures/job_events.json by tests/unit/test_jobfold_js.py): an older attempt
// is ignored, a newer one starts afresh, states only move up in rank. True if j changed.
export function applyEvent(j, ev) {
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
  if (target === 'PENDING') {
    j.reason = ev.reason ?? null;  // a retry says why it waits
  } else if (target === 'QUEUED') {
    Object.assign(j, { reason: ev.reason ?? null, native_id: ev.native_id || j.native_id });
  } else if (target === 'RUNNING') {
    j.started ||= ev.time * 1000; j.host = ev.host || j.host; j.native_id = ev.native_id || j.native_id;
    j.reason = null;
  } else if (RANK[target] === 4) {
    Object.assign(j, { ended: ev.time * 1000, exit_code: ev.exit_code ?? null, reason: ev.reason ?? null });
    if (ev.progress != null) j.progress = ev.progress;
    if (ev.msg != null) j.msg = ev.msg;
    if (target === 'SUCCEEDED') j.progress = 100;
  }
  return true;
}

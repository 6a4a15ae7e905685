// Talking to the service: REST calls with the access token (asked for when the service
// refuses the one kept), Server-Sent Events followed across reconnects, and the messages
// the page shows about them (an error alert, a toast, the connection state).

import { $, enc, h } from './dom.js';

const TOKEN = 'jobmesh.token';

export function messageNodes(err) {
  const items = err.items?.length > 1 ? err.items : null;  // one issue is in the message already
  return [h('p', {}, items ? `${err.message.split(':')[0]}:` : err.message || String(err)),
    items ? h('ul', {}, items.map((i) => h('li', {}, i))) : ''];
}
export function showError(err) {
  $('#alert-text').replaceChildren(...messageNodes(err));
  $('#alert').dataset.status = err.status ?? '';
  $('#alert').hidden = false;
}
$('#alert-close').addEventListener('click', () => { $('#alert').hidden = true; });
let toastTimer = 0;
export function toast(text) {
  $('#toast').textContent = text; $('#toast').hidden = false;
  clearTimeout(toastTimer); toastTimer = setTimeout(() => { $('#toast').hidden = true; }, 4000);
}
function setOnline(up) {
  $('#conn').className = `conn ${up ? 'up' : 'down'}`;
  $('#conn').textContent = up ? 'Live' : 'Connection lost, reconnecting…';
  if (up && $('#alert').dataset.status === '0') $('#alert').hidden = true;  // "cannot reach" is over
}

// ---------------------------------------------------------------- REST, token, SSE
export class ApiError extends Error {
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

export async function api(path, { method = 'GET', body, as = 'json' } = {}) {
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
export function live(path, handlers, onUp) {
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

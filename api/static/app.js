// Leasehold web UI: overview (queues, workers, jobs) and a job page with a live log tail.
// Every value from the server is inserted as text (textContent / text nodes), never as HTML.
'use strict';

const TOKEN_KEY = 'leasehold.token';
const REFRESH_MS = 5000;
const MAX_RETRY_MS = 30000;
const JOB_FIELDS = [
  'status', 'queue', 'command', 'payload', 'workflow_id', 'job_id', 'priority', 'attempt',
  'required_labels', 'worker_id', 'progress', 'progress_message', 'error', 'outputs',
  'upstream_outputs', 'metadata', 'enqueued_at_ms', 'started_at_ms', 'finished_at_ms',
];

const view = document.getElementById('view');
const notice = document.getElementById('notice');
const tokenInput = document.getElementById('token');
let leavePage = () => {};

function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

async function api(path, options = {}) {
  const headers = { Accept: 'application/json', ...options.headers };
  if (token()) headers.Authorization = 'Bearer ' + token();
  const resp = await fetch(path, { ...options, headers });
  const type = resp.headers.get('Content-Type') || '';
  const body = type.includes('json') ? await resp.json() : null;
  if (!resp.ok) {
    const err = new Error((body && body.message) || resp.status + ' ' + resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function link(href, text) {
  const a = el('a', text);
  a.href = href;
  return a;
}

function badge(status) {
  return el('span', status, 'badge status-' + status);
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

function fill(table, rows, columns) {
  const body = view.querySelector(table + ' tbody');
  const trs = rows.map((cells) => {
    const tr = el('tr');
    for (const cell of cells) {
      const td = el('td');
      td.append(cell instanceof Node ? cell : document.createTextNode(cell ?? ''));
      tr.append(td);
    }
    return tr;
  });
  if (!trs.length) {
    const td = el('td', 'none', 'empty');
    td.colSpan = columns;
    trs.push(el('tr'));
    trs[0].append(td);
  }
  body.replaceChildren(...trs);
}

function showNotice(text) {
  notice.textContent = text || '';
  notice.hidden = !text;
}

function report(err) {
  if (err.status === 401) {
    showNotice('Unauthorized: enter an API token above (the server runs with auth on).');
  } else {
    showNotice('Error: ' + err.message);
  }
}

function mount(templateId) {
  view.replaceChildren(document.getElementById(templateId).content.cloneNode(true));
}

function overview(queue) {
  mount('overview-tpl');
  view.querySelector('.queue-name').textContent = queue;
  let cursor = '';
  let nextCursor = null;
  let left = false;
  const next = view.querySelector('#next');

  async function refresh() {
    const params = new URLSearchParams({ queue, limit: '50', order: 'desc' });
    if (cursor) params.set('cursor', cursor);
    try {
      const [queues, workers, page] = await Promise.all([
        api('/api/queues'), api('/api/workers'), api('/api/jobs?' + params)]);
      if (left) return;
      fill('#queues', queues.map((q) => [
        link('#/queues/' + encodeURIComponent(q.queue), q.queue), q.ready, q.scheduled,
        q.waiting_deps, q.running, q.success, q.failure, q.cancelled, q.paused ? 'yes' : 'no',
        q.oldest_ready_age_secs == null ? '' : q.oldest_ready_age_secs.toFixed(1) + ' s',
      ]), 10);
      fill('#workers', workers.map((w) => [
        w.worker_id, w.name, badge(w.status), w.labels.join(', '), w.running_jobs,
        when(w.last_heartbeat_ms),
      ]), 6);
      fill('#jobs', page.jobs.map((j) => [
        link('#/jobs/' + encodeURIComponent(j.id), j.id), badge(j.status), j.command, j.attempt,
        when(j.enqueued_at_ms),
      ]), 5);
      nextCursor = page.next_cursor;
      next.disabled = !nextCursor;
      showNotice('');
    } catch (err) {
      if (!left) report(err);
    }
  }

  view.querySelector('#first').addEventListener('click', () => { cursor = ''; refresh(); });
  next.addEventListener('click', () => { cursor = nextCursor || ''; refresh(); });
  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => { left = true; clearInterval(timer); };
}

function fieldText(key, value) {
  if (key.endsWith('_ms')) return when(value);
  if (typeof value === 'object') return JSON.stringify(value, null, 2);
  return String(value);
}

function isEmpty(value) {
  if (value === null || value === undefined || value === '') return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.keys(value).length === 0;
}

function renderJob(job) {
  view.querySelector('.job-id').textContent = job.id;
  const status = view.querySelector('.job-status');
  status.textContent = job.status;
  status.className = 'job-status badge status-' + job.status;
  const fields = JOB_FIELDS.filter((key) => !isEmpty(job[key])).flatMap((key) => [
    el('dt', key), el('dd', fieldText(key, job[key]), typeof job[key] === 'object' ? 'json' : ''),
  ]);
  view.querySelector('.fields').replaceChildren(...fields);
}

async function streamTicket(path) {
  try {
    const body = await api('/api/stream-tickets', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ path }),
    });
    return body.ticket;
  } catch (err) {
    if (err.status === 401 && !token()) return null; // auth may be off: try without one
    throw err;
  }
}

function jobPage(id) {
  mount('job-tpl');
  const log = view.querySelector('#log');
  const state = view.querySelector('#stream-state');
  const path = '/api/jobs/' + encodeURIComponent(id) + '/logs/stream';
  let source = null;
  let ended = false;
  let left = false;
  let lastId = '';
  let retryMs = 1000;
  let retryTimer = null;

  function setState(text) {
    state.textContent = text;
    state.className = 'stream-state state-' + text;
  }

  async function loadJob() {
    try {
      const job = await api('/api/jobs/' + encodeURIComponent(id));
      if (left) return false;
      renderJob(job);
      showNotice('');
      return true;
    } catch (err) {
      if (!left) report(err);
      return false;
    }
  }

  let lastAttempt = null;
  let openLine = false; // the last chunk shown did not end its line

  function append(chunk) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const attempt = chunk.attempt === undefined ? 0 : chunk.attempt;
    if (lastAttempt !== null && attempt !== lastAttempt) {
      // a marker between attempts, on a line of its own
      if (openLine) log.append('\n');
      log.append(el('span', '── attempt ' + (attempt + 1) + ' ──\n', 'chunk log-marker'));
      openLine = false;
    } else if (openLine) {
      log.append('\n'); // never join two chunks that did not end their own lines
    }
    lastAttempt = attempt;
    openLine = !chunk.data.endsWith('\n');
    log.append(el('span', chunk.data, 'chunk log-' + chunk.stream));
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function finish(status) {
    ended = true;
    source.close();
    clearInterval(timer);
    setState('ended');
    const end = view.querySelector('#log-end');
    end.textContent = 'Job finished: ' + status;
    end.className = 'end status-' + status;
    end.hidden = false;
    loadJob();
  }

  async function connect() {
    const params = new URLSearchParams();
    if (lastId) params.set('after', lastId);
    try {
      const ticket = await streamTicket(path);
      if (ticket) params.set('ticket', ticket);
    } catch (err) {
      report(err);
      setState('error');
      return;
    }
    if (left) return;
    const query = params.toString();
    source = new EventSource(query ? path + '?' + query : path);
    source.onopen = () => { retryMs = 1000; setState('live'); };
    source.addEventListener('log', (ev) => {
      lastId = ev.lastEventId;
      append(JSON.parse(ev.data));
    });
    source.addEventListener('end', (ev) => finish(JSON.parse(ev.data).status));
    source.onerror = () => {
      if (ended || left) {
        source.close();
        return;
      }
      setState('reconnecting');
      // The browser retries by itself unless the server refused (e.g. the ticket expired):
      // then open a new stream with a fresh ticket, resuming after the last entry seen.
      if (source.readyState === EventSource.CLOSED) {
        retryTimer = setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
      }
    };
  }

  const timer = setInterval(() => { if (!ended) loadJob(); }, REFRESH_MS);
  loadJob().then((found) => {
    if (found && !left) connect();
    else setState('closed');
  });
  return () => {
    left = true;
    clearInterval(timer);
    clearTimeout(retryTimer);
    if (source) source.close();
  };
}

function route() {
  leavePage();
  showNotice('');
  const [kind, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  let arg = '';
  try {
    arg = decodeURIComponent(rest.join('/'));
  } catch {
    arg = '';
  }
  if (kind === 'jobs' && arg) leavePage = jobPage(arg);
  else leavePage = overview(kind === 'queues' && arg ? arg : 'default');
}

document.getElementById('auth').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = tokenInput.value.trim();
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
  route();
});
tokenInput.value = token();
window.addEventListener('hashchange', route);
route();

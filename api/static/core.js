// Leasehold web UI, shared parts: HTTP calls with the saved token, the signed-in role, DOM
// helpers, notices and action buttons. Server values are inserted as text, never as HTML.
'use strict';

const LH = (() => {
  const TOKEN_KEY = 'leasehold.token';
  const view = document.getElementById('view');
  const notice = document.getElementById('notice');
  const me = { role: null, auth: true };
  const LABELS = {
    status: 'Status', queue: 'Queue', command: 'Command', payload: 'Payload',
    workflow_id: 'Workflow', job_id: 'Name in workflow', priority: 'Priority (lower first)',
    attempt: 'Attempt', required_labels: 'Required worker labels', worker_id: 'Worker',
    progress: 'Progress (%)', progress_message: 'Progress message', error: 'Last error',
    outputs: 'Outputs', upstream_outputs: 'Outputs of dependencies', metadata: 'Metadata',
    enqueued_at_ms: 'Enqueued', started_at_ms: 'Started', finished_at_ms: 'Finished',
    delayed_until_ms: 'Not before', retry_policy: 'Retry policy', unique_key: 'Unique key',
    upstream: 'Outputs of dependencies', timeout_secs: 'Time limit (s)', lease_ttl_secs: 'Lease length (s)',
  };

  function token() {
    return localStorage.getItem(TOKEN_KEY) || '';
  }

  function setToken(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  }

  async function api(path, options = {}) {
    const headers = { Accept: 'application/json', ...options.headers };
    if (token()) headers.Authorization = 'Bearer ' + token();
    if (options.body !== undefined && typeof options.body !== 'string') {
      headers['Content-Type'] = 'application/json';
      options = { ...options, body: JSON.stringify(options.body) };
    }
    const resp = await fetch(path, { ...options, headers });
    const type = resp.headers.get('Content-Type') || '';
    const body = type.includes('json') ? await resp.json() : null;
    if (!resp.ok) {
      const err = new Error((body && body.message) || resp.status + ' ' + resp.statusText);
      err.status = resp.status;
      err.code = body && body.error;
      throw err;
    }
    return body;
  }

  // Learns the token's role; null when the server refuses it (the notice says why).
  async function whoami() {
    const box = document.getElementById('whoami');
    try {
      const body = await api('/api/me');
      me.role = body.role;
      me.auth = body.auth;
      box.textContent = body.auth ? 'Signed in as ' + body.role : 'Auth off (admin)';
    } catch (err) {
      me.role = null;
      box.textContent = '';
      report(err);
    }
    return me.role;
  }

  // Which actions the role may take; the server checks again on every call.
  function can(action) {
    if (me.role === 'admin') return true;
    return me.role === 'submitter' && (action === 'cancel' || action === 'run');
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function link(href, text, label) {
    const a = el('a', text);
    a.href = href;
    if (label) a.setAttribute('aria-label', label);
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

  function showNotice(text, kind) {
    notice.textContent = text || '';
    notice.className = kind || '';
    notice.hidden = !text;
  }

  function report(err) {
    if (err.status === 401 && !token()) {
      showNotice('Sign in: enter an API token above (the server runs with auth on).', 'warn');
    } else if (err.status === 401) {
      showNotice('That token was refused (invalid or revoked): check it and save it again.',
        'error');
    } else if (err.status === 403) {
      showNotice('Not allowed: ' + err.message + '. Ask an admin for a token with that role.',
        'error');
    } else {
      showNotice('Error: ' + err.message, 'error');
    }
  }

  function mount(templateId) {
    view.replaceChildren(document.getElementById(templateId).content.cloneNode(true));
  }

  // A button named by its action; `confirmText` asks first (destructive actions).
  function actionButton(text, label, run, confirmText) {
    const button = el('button', text, confirmText ? 'danger' : '');
    button.type = 'button';
    button.setAttribute('aria-label', label);
    button.addEventListener('click', async () => {
      if (confirmText && !window.confirm(confirmText)) return;
      button.disabled = true;
      try {
        await run();
        showNotice(label + ': done.', 'ok');
      } catch (err) {
        report(err);
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  function actions(...buttons) {
    const span = el('span', null, 'actions');
    span.append(...buttons.filter(Boolean));
    return span;
  }

  async function streamTicket(path) {
    try {
      const body = await api('/api/stream-tickets', { method: 'POST', body: { path } });
      return body.ticket;
    } catch (err) {
      if (err.status === 401 && !token()) return null; // auth may be off: try without one
      throw err;
    }
  }

  function fieldLabel(key) {
    return LABELS[key] || key.replace(/_/g, ' ');
  }

  return {
    view, me, token, setToken, api, whoami, can, el, link, badge, when, fill, showNotice,
    report, mount, actionButton, actions, streamTicket, fieldLabel,
  };
})();

// A live log tail over SSE with a stream ticket: chunks keep their own line breaks, a marker
// line separates attempts, stderr and system lines are styled apart.
'use strict';

LH.logTail = ({ log, state, path, onEnd }) => {
  const MAX_RETRY_MS = 30000;
  let source = null;
  let ended = false;
  let left = false;
  let lastId = '';
  let retryMs = 1000;
  let retryTimer = null;
  let lastAttempt = null;
  let lastStream = null;
  let openLine = false; // the last chunk shown did not end its line

  function setState(text) {
    state.textContent = text;
    state.className = 'stream-state state-' + text;
  }

  function append(chunk) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const attempt = chunk.attempt === undefined ? 0 : chunk.attempt;
    if (attempt !== lastAttempt && (lastAttempt !== null || attempt > 0)) {
      if (openLine) log.append('\n');
      log.append(LH.el('span', '── attempt ' + (attempt + 1) + ' ──\n', 'chunk log-marker'));
      openLine = false;
    } else if (openLine && chunk.stream !== lastStream) {
      log.append('\n'); // a partial line of one stream is not continued by the other
    }
    lastAttempt = attempt;
    lastStream = chunk.stream;
    openLine = !chunk.data.endsWith('\n');
    const span = LH.el('span', chunk.data, 'chunk log-' + chunk.stream);
    span.dataset.attempt = String(attempt);
    log.append(span);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function finish(status) {
    ended = true;
    source.close();
    setState('ended');
    if (onEnd) onEnd(status);
  }

  async function connect() {
    const params = new URLSearchParams();
    if (lastId) params.set('after', lastId);
    try {
      const ticket = await LH.streamTicket(path);
      if (ticket) params.set('ticket', ticket);
    } catch (err) {
      LH.report(err);
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

  connect();
  return {
    ended: () => ended,
    stop() {
      left = true;
      clearTimeout(retryTimer);
      if (source) source.close();
    },
  };
};

// Opens /api/events (optionally for one workflow) and calls onEvent with each transition.
LH.events = (query, onEvent, onState) => {
  let source = null;
  let left = false;
  let retryTimer = null;
  async function connect() {
    const params = new URLSearchParams(query);
    try {
      const ticket = await LH.streamTicket('/api/events');
      if (ticket) params.set('ticket', ticket);
    } catch (err) {
      LH.report(err);
      onState('error');
      return;
    }
    if (left) return;
    source = new EventSource('/api/events?' + params);
    source.onopen = () => onState('live');
    source.addEventListener('job', (ev) => onEvent(JSON.parse(ev.data)));
    source.onerror = () => {
      if (left) return;
      onState('reconnecting');
      if (source.readyState === EventSource.CLOSED) retryTimer = setTimeout(connect, 2000);
    };
  }
  connect();
  return () => {
    left = true;
    clearTimeout(retryTimer);
    if (source) source.close();
  };
};

// The overview: queues with pause/resume, the last hour's chart, workers with drain/undrain/
// revoke, and a queue's jobs with a status filter, a find-by-id box, retry and cancel.
'use strict';

LH.jobActions = (job, after) => {
  const enc = encodeURIComponent(job.id);
  const retry = ['failure', 'cancelled'].includes(job.status) && LH.can('retry')
    && LH.actionButton('Retry', 'Retry job ' + job.id, async () => {
      await LH.api('/api/jobs/' + enc + '/retry', { method: 'POST' });
      after();
    });
  const cancel = ['queued', 'running'].includes(job.status) && LH.can('cancel')
    && LH.actionButton('Cancel', 'Cancel job ' + job.id, async () => {
      await LH.api('/api/jobs/' + enc + '/cancel', { method: 'POST' });
      after();
    }, 'Cancel job ' + job.id + '? A running job is told to stop.');
  return LH.actions(retry, cancel);
};

LH.chart = (box, activity) => {
  const W = 600;
  const H = 120;
  const n = activity.minute_ms.length;
  const peak = Math.max(0, ...activity.success.map((s, i) => s + activity.failure[i]));
  const top = Math.max(1, peak);
  const bar = W / n;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + (H + 16));
  svg.setAttribute('role', 'img');
  const total = (xs) => xs.reduce((a, b) => a + b, 0);
  const summary = total(activity.success) + ' succeeded and ' + total(activity.failure)
    + ' failed in the last ' + n + ' minutes (busiest minute: ' + peak + ')';
  svg.setAttribute('aria-label', summary);
  activity.minute_ms.forEach((ms, i) => {
    const ok = activity.success[i];
    const bad = activity.failure[i];
    const hOk = (ok / top) * H;
    const hBad = (bad / top) * H;
    for (const [h, y, cls] of [[hOk, H - hOk, 'bar-ok'], [hBad, H - hOk - hBad, 'bar-bad']]) {
      if (!h) continue;
      const rect = document.createElementNS(ns, 'rect');
      rect.setAttribute('x', String(i * bar + 0.5));
      rect.setAttribute('y', String(y));
      rect.setAttribute('width', String(Math.max(bar - 1, 1)));
      rect.setAttribute('height', String(h));
      rect.setAttribute('class', cls);
      const title = document.createElementNS(ns, 'title');
      title.textContent = new Date(ms).toLocaleTimeString() + ': ' + ok + ' succeeded, '
        + bad + ' failed';
      rect.append(title);
      svg.append(rect);
    }
  });
  for (const [x, text, anchor] of [[0, '60 min ago', 'start'], [W, 'now', 'end']]) {
    const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', String(x));
    t.setAttribute('y', String(H + 13));
    t.setAttribute('text-anchor', anchor);
    t.setAttribute('class', 'axis');
    t.textContent = text;
    svg.append(t);
  }
  const legend = LH.el('p', summary + '.', 'hint');
  if (!activity.complete) legend.textContent += ' The event stream is capped, so the oldest'
    + ' minutes undercount.';
  box.replaceChildren(svg, legend);
};

LH.overview = (queue) => {
  LH.mount('overview-tpl');
  const view = LH.view;
  view.querySelectorAll('.queue-name').forEach((n) => { n.textContent = queue; });
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const filter = view.querySelector('#status-filter');
  filter.value = params.get('status') || '';
  let cursor = '';
  let nextCursor = null;
  let left = false;
  const next = view.querySelector('#next');

  function queueButton(q) {
    if (!LH.can('pause')) return '';
    const path = '/api/queues/' + encodeURIComponent(q.queue);
    const put = (paused) => async () => {
      await LH.api(path, { method: 'PUT', body: { paused } });
      refresh();
    };
    return q.paused
      ? LH.actionButton('Resume', 'Resume queue ' + q.queue, put(false))
      : LH.actionButton('Pause', 'Pause queue ' + q.queue, put(true));
  }

  function workerButtons(w) {
    if (!LH.can('drain')) return '';
    const path = '/api/workers/' + encodeURIComponent(w.worker_id);
    const call = (method, suffix) => async () => {
      await LH.api(path + suffix, { method });
      refresh();
    };
    const drain = w.status === 'draining'
      ? LH.actionButton('Undrain', 'Undrain worker ' + w.worker_id, call('POST', '/undrain'))
      : w.status !== 'offline'
        && LH.actionButton('Drain', 'Drain worker ' + w.worker_id, call('POST', '/drain'));
    const revoke = LH.actionButton('Revoke', 'Revoke worker ' + w.worker_id, call('DELETE', ''),
      'Revoke worker ' + w.worker_id + '? Its token stops working at once and its jobs are '
      + 'released for retry.');
    return LH.actions(drain, revoke);
  }

  async function refresh() {
    const query = new URLSearchParams({ queue, limit: '50', order: 'desc' });
    if (cursor) query.set('cursor', cursor);
    if (filter.value) query.set('status', filter.value);
    try {
      const [queues, workers, page, activity] = await Promise.all([
        LH.api('/api/queues'), LH.api('/api/workers'), LH.api('/api/jobs?' + query),
        LH.api('/api/queues/' + encodeURIComponent(queue) + '/activity').catch(() => null)]);
      if (left) return;
      LH.fill('#queues', queues.map((q) => [
        LH.link('#/queues/' + encodeURIComponent(q.queue), q.queue), q.ready, q.scheduled,
        q.waiting_deps, q.running, q.success, q.failure, q.cancelled,
        q.paused ? 'Paused' : 'Active',
        q.oldest_ready_age_secs == null ? '' : q.oldest_ready_age_secs.toFixed(1) + ' s',
        queueButton(q),
      ]), 11);
      LH.fill('#workers', workers.map((w) => [
        w.worker_id, w.name, LH.badge(w.status), w.labels.join(', '), w.running_jobs,
        LH.when(w.last_heartbeat_ms), workerButtons(w),
      ]), 7);
      LH.fill('#jobs', page.jobs.map((j) => [
        LH.link('#/jobs/' + encodeURIComponent(j.id), j.id), LH.badge(j.status), j.command,
        j.attempt + 1, LH.when(j.enqueued_at_ms), LH.jobActions(j, refresh),
      ]), 6);
      if (activity) LH.chart(view.querySelector('#chart'), activity);
      nextCursor = page.next_cursor;
      next.disabled = !nextCursor;
    } catch (err) {
      if (!left) LH.report(err);
    }
  }

  filter.addEventListener('change', () => { cursor = ''; refresh(); });
  view.querySelector('#filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = view.querySelector('#find-id').value.trim();
    if (id) location.hash = '#/jobs/' + encodeURIComponent(id);
    else refresh();
  });
  view.querySelector('#first').addEventListener('click', () => { cursor = ''; refresh(); });
  next.addEventListener('click', () => { cursor = nextCursor || ''; refresh(); });
  refresh();
  const timer = setInterval(refresh, 5000);
  return () => { left = true; clearInterval(timer); };
};

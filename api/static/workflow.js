// Workflows: the list, and one workflow's DAG (layers from depends_on) with live statuses from
// /api/events; a node opens the job's outputs, its dependencies' outputs and its live log.
'use strict';

LH.workflows = () => {
  LH.mount('workflows-tpl');
  let left = false;
  async function refresh() {
    try {
      const list = await LH.api('/api/workflows');
      if (left) return;
      LH.fill('#workflows', list.map((wf) => [
        LH.link('#/workflows/' + encodeURIComponent(wf.id), wf.name, 'Open workflow ' + wf.name),
        wf.queue, LH.badge(wf.status), wf.jobs.length,
        LH.actions(LH.can('run') && LH.actionButton('Run', 'Run workflow ' + wf.name, async () => {
          await LH.api('/api/workflows/' + encodeURIComponent(wf.id) + '/run', { method: 'POST' });
          refresh();
        })),
      ]), 5);
    } catch (err) {
      if (!left) LH.report(err);
    }
  }
  refresh();
  const timer = setInterval(refresh, 5000);
  return () => { left = true; clearInterval(timer); };
};

// Layer of each job: 0 for roots, else one more than its deepest dependency.
LH.layers = (jobs) => {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const layer = new Map();
  const depth = (id, seen) => {
    if (layer.has(id)) return layer.get(id);
    if (seen.has(id)) return 0; // a cycle cannot be stored, but never loop on one
    seen.add(id);
    const deps = (byId.get(id) || { depends_on: [] }).depends_on.filter((d) => byId.has(d));
    const value = deps.length ? 1 + Math.max(...deps.map((d) => depth(d, seen))) : 0;
    layer.set(id, value);
    return value;
  };
  jobs.forEach((j) => depth(j.id, new Set()));
  return layer;
};

LH.workflowPage = (id) => {
  const view = LH.view;
  LH.mount('workflow-tpl');
  const dag = view.querySelector('#dag');
  const panel = view.querySelector('#wf-job');
  const NODE_W = 170;
  const NODE_H = 50;
  const GAP_X = 60;
  const GAP_Y = 18;
  let wf = null;
  let left = false;
  let drawnKey = '';
  let selected = null;
  let tail = null;
  const nodes = new Map();
  let refetch = null;

  function draw() {
    const key = wf.jobs.map((j) => j.id + ':' + j.depends_on.join(',')).join(';');
    if (key === drawnKey) return;
    drawnKey = key;
    const layer = LH.layers(wf.jobs);
    const columns = [];
    for (const job of wf.jobs) (columns[layer.get(job.id)] ||= []).push(job);
    const pos = new Map();
    columns.forEach((col, x) => col.forEach((job, y) => {
      pos.set(job.id, { x: x * (NODE_W + GAP_X), y: y * (NODE_H + GAP_Y) });
    }));
    const width = columns.length * (NODE_W + GAP_X) - GAP_X;
    const height = Math.max(...columns.map((c) => c.length)) * (NODE_H + GAP_Y) - GAP_Y;
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('width', String(width));
    svg.setAttribute('height', String(height));
    svg.setAttribute('aria-hidden', 'true');
    for (const job of wf.jobs) {
      for (const dep of job.depends_on) {
        const a = pos.get(dep);
        const b = pos.get(job.id);
        if (!a || !b) continue;
        const path = document.createElementNS(ns, 'path');
        const [x1, y1, x2, y2] = [a.x + NODE_W, a.y + NODE_H / 2, b.x, b.y + NODE_H / 2];
        const mid = (x1 + x2) / 2;
        path.setAttribute('d', `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
        path.setAttribute('class', 'edge');
        svg.append(path);
      }
    }
    dag.style.width = width + 'px';
    dag.style.height = height + 'px';
    nodes.clear();
    const buttons = wf.jobs.map((job) => {
      const button = LH.el('button', null, 'node');
      button.type = 'button';
      button.dataset.job = job.id;
      button.style.left = pos.get(job.id).x + 'px';
      button.style.top = pos.get(job.id).y + 'px';
      button.append(LH.el('span', job.name || job.id, 'node-name'), LH.el('span', '', 'node-status'));
      button.addEventListener('click', () => open(job.id));
      nodes.set(job.id, button);
      return button;
    });
    dag.replaceChildren(svg, ...buttons);
  }

  function paint(jobId, status) {
    const button = nodes.get(jobId);
    if (!button) return;
    button.className = 'node status-' + status;
    button.querySelector('.node-status').textContent = status;
    button.dataset.status = status;
    const job = wf.jobs.find((j) => j.id === jobId);
    button.setAttribute('aria-label', 'Job ' + (job.name || jobId) + ': ' + status);
  }

  function render() {
    view.querySelector('.wf-name').textContent = wf.name;
    const badge = view.querySelector('.wf-status');
    badge.textContent = wf.status;
    badge.className = 'wf-status badge status-' + wf.status;
    draw();
    wf.jobs.forEach((j) => paint(j.id, j.status));
    const enc = encodeURIComponent(id);
    view.querySelector('.wf-actions').replaceChildren(LH.actions(
      LH.can('run') && LH.actionButton('Run', 'Run workflow ' + wf.name, async () => {
        await LH.api('/api/workflows/' + enc + '/run', { method: 'POST' });
        load();
      }),
      LH.can('cancel') && wf.status === 'running' && LH.actionButton('Cancel run',
        'Cancel the run of workflow ' + wf.name, async () => {
          await LH.api('/api/workflows/' + enc + '/cancel', { method: 'POST' });
          load();
        }, 'Cancel every unfinished job of this run?'),
    ));
    if (selected) showJob(selected, false);
  }

  async function load() {
    try {
      wf = await LH.api('/api/workflows/' + encodeURIComponent(id) + '/status');
      if (!left) render();
    } catch (err) {
      if (!left) LH.report(err);
    }
  }

  function showJob(jobId, fresh) {
    const job = wf.jobs.find((j) => j.id === jobId);
    if (!job) return;
    if (!fresh) {
      const dl = panel.querySelector('dl');
      if (dl) LH.fields(dl, fieldsOf(job), ['status', 'attempt', 'error', 'outputs', 'upstream']);
      return;
    }
    if (tail) tail.stop();
    const heading = LH.el('h3', 'Job ' + (job.name || job.id));
    heading.tabIndex = -1;
    const dl = LH.el('dl', null, 'fields');
    LH.fields(dl, fieldsOf(job), ['status', 'attempt', 'error', 'outputs', 'upstream']);
    const state = LH.el('span', 'connecting', 'stream-state');
    const log = LH.el('pre', null, 'log');
    log.tabIndex = 0;
    log.setAttribute('aria-label', 'Log of job ' + (job.name || job.id));
    const logHead = LH.el('h4', 'Log ');
    logHead.append(state);
    const more = job.uid ? LH.link('#/jobs/' + encodeURIComponent(job.uid), 'Open job page') : '';
    panel.replaceChildren(heading, dl, more, logHead, log);
    panel.hidden = false;
    heading.focus();
    const path = '/api/workflows/' + encodeURIComponent(id) + '/jobs/'
      + encodeURIComponent(job.id) + '/logs/stream';
    tail = LH.logTail({ log, state, path });
  }

  function fieldsOf(job) {
    const upstream = {};
    for (const dep of job.depends_on) {
      const d = wf.jobs.find((j) => j.id === dep);
      if (d && d.outputs) upstream[dep] = d.outputs;
    }
    return { ...job, upstream };
  }

  function open(jobId) {
    selected = jobId;
    showJob(jobId, true);
  }

  const stopEvents = LH.events({ workflow_id: id }, (event) => {
    if (!wf) return;
    const job = wf.jobs.find((j) => j.uid === event.job);
    if (job) {
      job.status = event.to;
      paint(job.id, event.to);
    }
    clearTimeout(refetch); // outputs, the run's status and new runs' job ids come from a re-read
    refetch = setTimeout(load, 300);
  }, (text) => {
    const state = view.querySelector('#wf-stream');
    if (state) {
      state.textContent = text;
      state.className = 'stream-state state-' + text;
    }
  });
  load();
  const timer = setInterval(load, 30000);
  return () => {
    left = true;
    clearInterval(timer);
    clearTimeout(refetch);
    stopEvents();
    if (tail) tail.stop();
  };
};

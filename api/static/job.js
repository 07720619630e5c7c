// The job page: fields with human labels, retry/cancel, why a queued job waits, the live log.
'use strict';

LH.JOB_FIELDS = [
  'status', 'queue', 'command', 'payload', 'workflow_id', 'job_id', 'priority', 'attempt',
  'required_labels', 'worker_id', 'progress', 'progress_message', 'error', 'outputs',
  'upstream_outputs', 'metadata', 'enqueued_at_ms', 'started_at_ms', 'finished_at_ms',
  'delayed_until_ms',
];

LH.fieldText = (key, value) => {
  if (key.endsWith('_ms')) return LH.when(value);
  if (key === 'attempt') return String(value + 1);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join(', ');
  if (typeof value === 'object') return JSON.stringify(value, null, 2);
  return String(value);
};

LH.isEmpty = (value) => {
  if (value === null || value === undefined || value === '' || value === 0) return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.keys(value).length === 0;
};

LH.fields = (dl, job, keys) => {
  const rows = keys.filter((key) => key === 'attempt' || !LH.isEmpty(job[key])).flatMap((key) => [
    LH.el('dt', LH.fieldLabel(key)),
    LH.el('dd', LH.fieldText(key, job[key]), typeof job[key] === 'object' ? 'json' : ''),
  ]);
  dl.replaceChildren(...rows);
};

// Why a queued job is not running yet, in words (null when it is not queued).
LH.whyWaiting = async (job) => {
  if (job.status !== 'queued') return null;
  const now = Date.now();
  if (job.delayed_until_ms > now) {
    const at = LH.when(job.delayed_until_ms);
    return job.attempt > 0
      ? 'Backing off after a failed attempt: it becomes claimable again at ' + at + '.'
      : 'Delayed: it becomes claimable at ' + at + '.';
  }
  if (job.workflow_id) {
    const wf = await LH.api('/api/workflows/' + encodeURIComponent(job.workflow_id) + '/status')
      .catch(() => null);
    const me = wf && wf.jobs.find((j) => j.uid === job.id || j.id === job.job_id);
    if (me) {
      const open = me.depends_on.filter((dep) => {
        const d = wf.jobs.find((j) => j.id === dep);
        return d && d.status !== 'success';
      });
      if (open.length) return 'Waiting on dependencies: ' + open.join(', ') + '.';
    }
  }
  const [queue, workers] = await Promise.all([
    LH.api('/api/queues/' + encodeURIComponent(job.queue)).catch(() => null),
    LH.api('/api/workers').catch(() => null)]);
  if (queue && queue.paused) return 'The queue ' + job.queue + ' is paused.';
  if (workers) {
    const online = workers.filter((w) => w.status === 'idle' || w.status === 'busy');
    const fits = online.filter((w) => job.required_labels.every((l) => w.labels.includes(l)));
    if (!online.length) return 'No worker is online.';
    if (!fits.length) {
      return 'No online worker has the labels ' + job.required_labels.join(', ')
        + ' that this job requires.';
    }
  }
  return 'Ready: waiting for a worker to claim it.';
};

LH.jobPage = (id) => {
  const view = LH.view;
  LH.mount('job-tpl');
  const path = '/api/jobs/' + encodeURIComponent(id) + '/logs/stream';
  let left = false;
  let tail = null;

  async function loadJob() {
    try {
      const job = await LH.api('/api/jobs/' + encodeURIComponent(id));
      if (left) return false;
      view.querySelector('.job-id').textContent = job.id;
      const status = view.querySelector('.job-status');
      status.textContent = job.status;
      status.className = 'job-status badge status-' + job.status;
      view.querySelector('.job-actions').replaceChildren(LH.jobActions(job, loadJob));
      const keys = LH.JOB_FIELDS.filter((k) => k !== 'job_id' || job.workflow_id);
      LH.fields(view.querySelector('.fields'), job, keys);
      const why = await LH.whyWaiting(job);
      const box = view.querySelector('#why');
      if (box) {
        box.textContent = why ? 'Why it waits: ' + why : '';
        box.hidden = !why;
      }
      return true;
    } catch (err) {
      if (left) return false;
      if (err.status === 404) {
        LH.mount('missing-tpl');
        view.querySelector('.missing-id').textContent = id;
        left = true;
      } else {
        LH.report(err);
      }
      return false;
    }
  }

  const timer = setInterval(() => { if (!left) loadJob(); }, 5000);
  loadJob().then((found) => {
    if (!found || left) return;
    tail = LH.logTail({
      log: view.querySelector('#log'),
      state: view.querySelector('#stream-state'),
      path,
      onEnd(status) {
        const end = view.querySelector('#log-end');
        end.textContent = 'Job finished: ' + status;
        end.className = 'end status-' + status;
        end.hidden = false;
        loadJob();
      },
    });
  });
  return () => {
    left = true;
    clearInterval(timer);
    if (tail) tail.stop();
  };
};

// Leasehold web UI: the router and the token box. The views live in overview.js, job.js and
// workflow.js; shared helpers in core.js and logtail.js.
'use strict';

(() => {
  let leavePage = () => {};
  const tokenInput = document.getElementById('token');

  async function route() {
    leavePage();
    leavePage = () => {};
    LH.showNotice('');
    const [kind, ...rest] = location.hash.replace(/^#\/?/, '').split('?')[0].split('/');
    let arg = '';
    try {
      arg = decodeURIComponent(rest.join('/'));
    } catch {
      arg = '';
    }
    const hash = location.hash;
    await LH.whoami();
    if (hash !== location.hash) return; // navigated again meanwhile
    if (kind === 'jobs' && arg) leavePage = LH.jobPage(arg);
    else if (kind === 'workflows' && arg) leavePage = LH.workflowPage(arg);
    else if (kind === 'workflows') leavePage = LH.workflows();
    else leavePage = LH.overview(kind === 'queues' && arg ? arg : 'default');
  }

  document.getElementById('auth').addEventListener('submit', (ev) => {
    ev.preventDefault();
    LH.setToken(tokenInput.value.trim());
    route();
  });
  tokenInput.value = LH.token();
  window.addEventListener('hashchange', route);
  route();
})();

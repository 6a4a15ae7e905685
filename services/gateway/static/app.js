// jobmesh GUI. Routes: #/ (workflows), #/wf/NAME (table), #/wf/NAME/graph, .../timeline,
// .../runs; ?job=JOB opens a job, ?run=RUN shows a past run. Every URL is relative, so the
// page works at any host, port or path prefix.
// State comes from the REST API, then live from Server-Sent Events. Plain ES modules, no
// build step: api.js (REST, token, SSE), dom.js (helpers), list.js (the workflows page),
// workflow.js (one workflow's page) with table.js, graph.js, detail.js and keys.js, and
// jobstate.js, timeline.js, runs.js, groups.js.
import { TABS } from './keys.js';
import { listPage } from './list.js';
import { WorkflowPage } from './workflow.js';

let page = null;
function route() {
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'wf' && parts[1]) {
    if (!(page instanceof WorkflowPage && page.name === parts[1])) { page?.destroy(); page = new WorkflowPage(parts[1]); }
    const q = new URLSearchParams(query);
    page.show(TABS.includes(parts[2]) ? parts[2] : 'table', q.get('job'), q.get('run'));
  } else if (!page || page instanceof WorkflowPage) {
    page?.destroy(); page = listPage();
  }
}
window.addEventListener('hashchange', route);
route();

// The history view: import jobs newest first (by cursor), and one job's rejected rows, paged by line.

import { api, showProblem } from './api.js';
import { $, basename, count, duration, h, when } from './dom.js';

const PAGE = 20;
const REJECTS_PAGE = 50;
const SHORT = 120; // characters of a rejected row shown before it is unfolded
const COUNTERS = ['rowsProcessed', 'rowsInserted', 'rowsDuplicate', 'rowsUpdated', 'rowsUnchanged', 'rowsProtected', 'rowsInvalid'];
let older = null; // nextAfterStartedAt of the page shown
let rejects = { jobId: null, after: 0 };

export async function showJobs() {
  $('jobs-newest').addEventListener('click', () => loadJobs(null));
  $('jobs-older').addEventListener('click', () => loadJobs(older));
  $('rejects-more').addEventListener('click', () => loadRejects(rejects.jobId, rejects.after));
  await loadJobs(null);
}

async function loadJobs(after) {
  $('jobs-error').textContent = '';
  const query = new URLSearchParams({ limit: PAGE });
  if (after) query.set('afterStartedAt', after);
  try {
    const page = await api('GET', `/import/jobs?${query}`);
    $('jobs-table').tBodies[0].replaceChildren(...page.items.map(jobRow));
    $('jobs-empty').hidden = page.items.length > 0;
    older = page.nextAfterStartedAt;
    $('jobs-older').disabled = !older;
  } catch (error) {
    showProblem(error, 'jobs', 'jobs-error');
  }
}

function jobRow(job) {
  const action = job.rowsInvalid
    ? h('button', { type: 'button', class: 'link', onclick: () => loadRejects(job.jobId, 0) }, `Show ${count(job.rowsInvalid)}`)
    : 'none';
  return h(
    'tr',
    { 'data-job-id': job.jobId },
    h('td', {}, h('span', { class: 'badge', 'data-status': job.status }, job.status)),
    h('td', { class: 'file', title: job.filePath }, basename(job.filePath)),
    h('td', {}, when(job.startedAt)),
    h('td', {}, duration(job.elapsedSec)),
    COUNTERS.map((key) => h('td', { class: 'num', 'data-counter': key }, count(job[key]))),
    h('td', {}, action),
  );
}

/** A rejected row's text; a long one folded behind its beginning (a generated row is ~850 bytes). */
function raw(text) {
  if (text.length <= SHORT) return h('code', { class: 'raw' }, text);
  return h('details', {}, h('summary', {}, h('code', { class: 'raw' }, `${text.slice(0, SHORT)}…`)), h('code', { class: 'raw' }, text));
}

async function loadRejects(jobId, after) {
  const panel = $('rejects');
  const body = $('rejects-table').tBodies[0];
  try {
    const query = new URLSearchParams({ afterLine: after, limit: REJECTS_PAGE });
    const page = await api('GET', `/import/jobs/${encodeURIComponent(jobId)}/errors?${query}`);
    const rows = page.items.map((row) =>
      h('tr', {}, h('td', { class: 'num' }, count(row.line)), h('td', {}, row.reason), h('td', {}, raw(row.text))),
    );
    if (after === 0) body.replaceChildren(...rows);
    else body.append(...rows);
    $('rejects-title').textContent = `Rejected rows of job ${jobId} (${count(page.rowsInvalid)} rejected; the first IMPORT_MAX_REJECTS are kept)`;
    rejects = { jobId, after: page.nextAfterLine };
    $('rejects-more').disabled = page.nextAfterLine === null;
    panel.hidden = false;
  } catch (error) {
    showProblem(error, 'jobs', 'jobs-error');
  }
}

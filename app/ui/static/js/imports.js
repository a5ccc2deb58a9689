// The import view: choose a file and how it is read (previewed as the options change), start, follow the job live
// (server-sent events), cancel and resume.

import { api, clearProblems, showProblem, streamUrl } from './api.js';
import { $, basename, bytes, count, duration, h, when } from './dom.js';
import { forgetMapping, mappedColumns, refreshPreview, setupPreview } from './preview.js';

const COUNTERS = [
  ['rowsProcessed', 'Processed'],
  ['rowsInserted', 'Inserted'],
  ['rowsDuplicate', 'Duplicate'],
  ['rowsUpdated', 'Updated'],
  ['rowsUnchanged', 'Unchanged'],
  ['rowsProtected', 'Protected'],
  ['rowsInvalid', 'Invalid'],
];
const EVENTS = ['snapshot', 'progress', 'done', 'error', 'cancelled'];
const RECONNECT_MS = 3000;
let source = null;

export async function showImport() {
  buildCounters();
  $('import-form').addEventListener('submit', startImport);
  $('import-refresh').addEventListener('click', loadFiles);
  $('import-file').addEventListener('change', fileChosen);
  for (const radio of $('import-form').mode) radio.addEventListener('change', refreshPreview); // outcomes differ
  setupPreview(request);
  $('job-cancel').addEventListener('click', () => command('/import/cancel'));
  $('job-resume').addEventListener('click', () => command('/import/resume'));
  await loadFiles(); // the first authenticated call: asks for the token when one is needed
  follow();
}

function buildCounters() {
  const list = $('job-counters');
  for (const [key, label] of COUNTERS) {
    list.append(h('div', {}, h('dt', {}, label), h('dd', { id: `counter-${key}` }, '0')));
  }
}

async function loadFiles() {
  const select = $('import-file');
  const chosen = select.value;
  $('import-filePath-error').textContent = '';
  try {
    const files = await api('GET', '/import/files');
    select.replaceChildren(
      ...files.items.map((file) =>
        h('option', { value: file.name }, `${file.name} (${bytes(file.size)}, modified ${when(file.modifiedAt)})`),
      ),
    );
    if (files.items.some((file) => file.name === chosen)) select.value = chosen;
    if (select.value !== chosen) forgetMapping();
    await refreshPreview();
    if (!files.items.length) $('import-filePath-error').textContent = 'The import folder holds no file.';
    if (files.truncated) $('import-filePath-error').textContent = 'Only the first files of the folder are listed.';
  } catch (error) {
    showProblem(error, 'import', 'import-error');
  }
}

function fileChosen() {
  forgetMapping();
  refreshPreview();
}

/** The body of POST /import/sync, and of the preview: the preview shows what Start will do. */
function request() {
  const form = $('import-form');
  const body = {
    filePath: form.filePath.value,
    mode: form.mode.value,
    dryRun: form.dryRun.checked,
    delimiter: $('import-delimiter').value === 'tab' ? '\t' : $('import-delimiter').value,
    encoding: $('import-encoding').value, // not form.encoding: a form's own property (its enctype)
    quote: $('import-quote').value,
  };
  const columns = mappedColumns();
  if (columns) body.columns = columns;
  const batch = form.batchSize.value.trim();
  if (batch) body.batchSize = Number(batch);
  return body;
}

async function startImport(event) {
  event.preventDefault();
  clearProblems($('import-form'), 'import-error');
  $('job-action-error').textContent = '';
  const button = $('import-start');
  button.disabled = true;
  try {
    render(await api('POST', '/import/sync', request()));
    follow();
  } catch (error) {
    showProblem(error, 'import', 'import-error');
  } finally {
    button.disabled = false;
  }
}

async function command(path) {
  $('job-action-error').textContent = '';
  try {
    render(await api('POST', path));
    follow();
  } catch (error) {
    showProblem(error, 'job', 'job-action-error');
  }
}

/** (Re)connect to the progress stream: it sends a snapshot at once, then every change. */
function follow() {
  if (source) source.close();
  source = new EventSource(streamUrl('/import/progress/stream'));
  for (const name of EVENTS) {
    source.addEventListener(name, (event) => {
      if (event.data) render(JSON.parse(event.data)); // a dropped connection is an `error` without data
    });
  }
  source.addEventListener('error', (event) => {
    if (!event.data && source.readyState === EventSource.CLOSED) setTimeout(recover, RECONNECT_MS);
  });
}

async function recover() {
  try {
    render(await api('GET', '/import/progress')); // asks for the token again if it was refused
  } catch {
    // the status line says what is wrong; try the stream again anyway
  }
  follow();
}

function render(job) {
  const running = job.status === 'RUNNING';
  const status = $('job-status');
  status.textContent = job.status;
  status.dataset.status = job.status;
  $('job-file').textContent = basename(job.filePath);
  $('job-mode').textContent = job.jobId ? `${job.mode}${job.dryRun ? ', dry run' : ''}, batch ${job.batchSize}` : '';
  $('job-bar').value = job.percent;
  $('job-percent').textContent = `${job.percent} %`;
  $('job-rate').textContent = job.jobId ? `${count(Math.round(job.rateRowsPerSec))} rows/s` : '';
  $('job-eta').textContent = running && job.etaSec !== null ? `about ${duration(job.etaSec)} left` : '';
  for (const [key] of COUNTERS) $(`counter-${key}`).textContent = count(job[key]);
  $('job-cancel').disabled = !running;
  $('job-resume').disabled = !['FAILED', 'CANCELLED'].includes(job.status);
  renderError(job);
  $('job-recent').replaceChildren(...(job.recentCustomers || []).map((id) => h('li', {}, id)));
}

function renderError(job) {
  const box = $('job-error');
  box.hidden = job.status !== 'FAILED';
  if (job.status === 'FAILED') {
    box.textContent =
      `This import stopped with an error: ${job.error || 'no reason was recorded'}. ` +
      `${count(job.rowsProcessed)} rows before it are saved; Resume continues from there once the cause is fixed.`;
  }
}

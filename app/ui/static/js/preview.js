// The import preview (POST /import/preview): how the chosen file will be read, its columns with the field each
// feeds (a control per column to change it), and its first rows as the import will store them. It is asked again
// whenever an option changes; the request it shows is the request Start sends.

import { api, clearProblems, showProblem } from './api.js';
import { $, bytes, count, h } from './dom.js';

const FIELDS = [
  'customerId', 'firstName', 'lastName', 'email', 'company', 'city', 'country', 'phone1', 'phone2',
  'subscriptionDate', 'website', 'about',
];
const IGNORE = 'ignore';
const LIMIT = 20;
const TYPING_MS = 300; // the quote box: one preview when typing stops, not one per key
const BUSY_MS = 1000;
const OUTCOMES = {
  insert: 'new',
  duplicate: 'duplicate, skipped',
  update: 'update',
  unchanged: 'unchanged',
  protected: 'hand-edited, kept',
};
const SHOWN_DELIMITER = { '\t': 'tab', ',': ', comma', ';': '; semicolon', '|': '| pipe' };
let mapping = {}; // header name -> field or IGNORE, as the user picked it: the request's `columns`
let request = () => ({}); // the body Start would send (imports.js)
let asked = 0; // the number of the latest preview asked for: an older answer arriving late is dropped
let pending = null; // the AbortController of the preview in flight: a newer one abandons it
let typing = null;

/** Wire the format controls; `body` builds the request both the preview and Start send. */
export function setupPreview(body) {
  request = body;
  for (const id of ['import-delimiter', 'import-encoding']) $(id).addEventListener('change', refreshPreview);
  $('import-quote').addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(refreshPreview, TYPING_MS);
  });
}

/** The columns the user mapped (null: none), as POST /import/sync takes them. */
export function mappedColumns() {
  return Object.keys(mapping).length ? { ...mapping } : null;
}

/** Another file: its columns are not this one's. */
export function forgetMapping() {
  mapping = {};
}

export async function refreshPreview() {
  const body = request();
  const mine = ++asked;
  if (pending) pending.abort(); // its answer is stale already; the server stops reading for it
  pending = new AbortController();
  clearProblems($('import-form'), 'preview-error');
  if (!body.filePath) {
    show(null, 'Choose a file to see how it will be read.');
    return;
  }
  $('preview').setAttribute('aria-busy', 'true');
  $('preview-summary').textContent = `Reading the start of ${body.filePath}…`;
  try {
    const shown = await api('POST', `/import/preview?limit=${LIMIT}`, body, pending.signal);
    if (mine === asked) show(shown, summary(shown));
  } catch (error) {
    if (mine !== asked) return;
    if (error.status === 503) {
      $('preview-summary').textContent = 'The service is busy; the preview is asked again in a moment…';
      clearTimeout(typing);
      typing = setTimeout(refreshPreview, BUSY_MS); // its answer said Retry-After: 1
      return;
    }
    show(null, `${body.filePath} cannot be imported with these options.`);
    showProblem(error, 'import', 'preview-error');
    const problem = error.problem || {}; // a header without an id column: how it is read, what to map
    if (problem.csv && problem.decided) $('preview-format').replaceChildren(...formatItems(problem));
    if (Array.isArray(problem.columns)) renderColumns(problem.columns);
  } finally {
    if (mine === asked) $('preview').setAttribute('aria-busy', 'false');
  }
}

function show(shown, text) {
  $('preview-summary').textContent = text;
  $('preview-format').replaceChildren(...(shown ? formatItems(shown) : []));
  $('preview-columns-wrap').hidden = !shown;
  $('preview-rows-wrap').hidden = !shown;
  if (shown) {
    renderColumns(shown.columns);
    renderRows(shown);
  }
}

function summary(shown) {
  const rows = shown.rowsEstimateExact
    ? `${count(shown.rowsEstimate)} rows`
    : `about ${count(shown.rowsEstimate)} rows (estimated from its first ${bytes(shown.bytesRead)})`;
  return `${shown.filePath}: ${bytes(shown.fileSize)}, ${rows}.`;
}

function formatItems(shown) {
  const { csv, decided } = shown;
  const items = [
    ['Encoding', csv.encoding, decided.encoding],
    ['Delimiter', SHOWN_DELIMITER[csv.delimiter] || csv.delimiter, decided.delimiter],
    ['Quote', csv.quote, decided.quote],
    ['Line endings', csv.lineEnding, decided.lineEnding],
    ['Compression', csv.compression || 'none', decided.compression],
  ];
  return items.map(([label, value, how]) =>
    h('div', { 'data-format': label }, h('dt', {}, label), h('dd', {}, value, ' ', h('span', { class: 'muted' }, `(${how})`))),
  );
}

function renderColumns(columns) {
  $('preview-columns-wrap').hidden = false;
  $('preview-columns').tBodies[0].replaceChildren(
    ...columns.map((column, index) =>
      h(
        'tr',
        { 'data-column': column.name },
        h('th', { scope: 'row' }, h('label', { for: `map-${index}` }, column.name)),
        h('td', {}, fieldChoice(column, index)),
        h('td', { class: 'muted' }, column.reason),
      ),
    ),
  );
}

function fieldChoice(column, index) {
  const choice = h(
    'select',
    { id: `map-${index}`, onchange: (event) => mapColumn(column.name, event.target.value) },
    h('option', { value: IGNORE }, 'ignore'),
    FIELDS.map((name) => h('option', { value: name }, name)),
  );
  choice.value = column.field || IGNORE;
  return choice;
}

function mapColumn(name, field) {
  for (const [other, target] of Object.entries(mapping)) {
    if (other !== name && target === field && field !== IGNORE) delete mapping[other]; // one column per field
  }
  mapping[name] = field;
  refreshPreview();
}

function renderRows(shown) {
  const fields = [...new Set(shown.columns.map((column) => column.field).filter(Boolean))];
  const table = $('preview-rows');
  table.tHead.rows[0].replaceChildren(
    h('th', { scope: 'col', class: 'num' }, 'Line'),
    h('th', { scope: 'col' }, 'Will be'),
    ...fields.map((name) => h('th', { scope: 'col' }, name)),
  );
  table.tBodies[0].replaceChildren(...shown.rows.map((row) => previewRow(row, fields)));
}

function previewRow(row, fields) {
  const line = h('td', { class: 'num' }, count(row.line));
  if (!row.customer) {
    return h(
      'tr',
      { class: 'invalid', 'data-line': row.line },
      line,
      h('td', {}, h('span', { class: 'badge', 'data-outcome': 'invalid' }, 'invalid'), ' ', row.reason),
      h('td', { colspan: Math.max(fields.length, 1) }, h('code', { class: 'raw' }, row.text)),
    );
  }
  const outcome = h('span', { class: 'badge', 'data-outcome': row.outcome }, OUTCOMES[row.outcome] || row.outcome);
  return h(
    'tr',
    { 'data-line': row.line, 'data-stored': row.stored ? 'true' : null },
    line,
    h('td', {}, outcome, row.stored ? h('span', { class: 'stored' }, ' id already stored') : null),
    fields.map((name) => h('td', { 'data-field': name }, row.customer[name] ?? '')),
  );
}

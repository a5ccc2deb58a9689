// The customers view: search (q/email/country), pages by cursor, view, create, edit (PATCH), delete, export.

import { api, clearProblems, downloadUrl, showProblem } from './api.js';
import { $, count, h, when } from './dom.js';

const PAGE = 25;
const FILTERS = ['q', 'email', 'country'];
const FIELDS = [
  ['customerId', 'Customer id', 'text'],
  ['firstName', 'First name', 'text'],
  ['lastName', 'Last name', 'text'],
  ['email', 'Email', 'email'],
  ['company', 'Company', 'text'],
  ['city', 'City', 'text'],
  ['country', 'Country', 'text'],
  ['phone1', 'Phone 1', 'tel'],
  ['phone2', 'Phone 2', 'tel'],
  ['subscriptionDate', 'Subscription date', 'date'],
  ['website', 'Website', 'url'],
  ['about', 'About', 'textarea'],
];
const REQUIRED = new Set(['firstName', 'lastName', 'email']);
const state = { filters: {}, cursors: [], cursor: null, next: null, editing: null };

export async function showCustomers() {
  buildEditor();
  const params = new URLSearchParams(location.search);
  for (const name of FILTERS) $(`search-${name}`).value = params.get(name) || '';
  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    search();
  });
  $('search-clear').addEventListener('click', () => {
    for (const name of FILTERS) $(`search-${name}`).value = '';
    search();
  });
  $('customers-next').addEventListener('click', () => page(state.next, [...state.cursors, state.cursor]));
  $('customers-prev').addEventListener('click', () => page(state.cursors.at(-1), state.cursors.slice(0, -1)));
  $('customer-new').addEventListener('click', () => openEditor(null));
  $('customers-export').addEventListener('click', exportSearch);
  $('editor-form').addEventListener('submit', save);
  $('editor-close').addEventListener('click', closeEditor);
  $('editor-delete').addEventListener('click', () => remove(state.editing));
  await search();
}

/** A new search from the form; the URL keeps it (?q=...), so it can be bookmarked and reloaded. */
async function search() {
  state.filters = {};
  for (const name of FILTERS) {
    const value = $(`search-${name}`).value.trim();
    if (value) state.filters[name] = value;
  }
  const query = new URLSearchParams(state.filters).toString();
  history.replaceState(null, '', `/ui/customers${query ? `?${query}` : ''}`);
  await page(null, []);
}

/** The current search as a CSV download: a link the browser saves straight to disk (streamed, never held in the
 * page), with the token in its query when one is set. */
function exportSearch() {
  const link = h('a', { href: downloadUrl('/customers/export', state.filters), download: '', hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  $('customers-notice').textContent = 'Export started: the browser saves the CSV file.';
}

async function page(cursor, previous) {
  $('search-error').textContent = '';
  const query = new URLSearchParams({ ...state.filters, limit: PAGE });
  if (cursor) query.set('after', cursor);
  try {
    const result = await api('GET', `/customers?${query}`);
    Object.assign(state, { cursor, cursors: previous, next: result.nextCursor });
    $('customers-table').tBodies[0].replaceChildren(...result.items.map(row));
    const total = `${count(result.total)}${result.totalCapped ? '+' : ''}`;
    $('customers-summary').textContent = result.items.length ? `${total} ${result.total === 1 ? 'customer matches' : 'customers match'}` : 'No customer matches.';
    $('customers-next').disabled = !result.nextCursor;
    $('customers-prev').disabled = cursor === null;
  } catch (error) {
    showProblem(error, 'search', 'search-error');
  }
}

function row(customer) {
  const name = [customer.firstName, customer.lastName].filter(Boolean).join(' ');
  return h(
    'tr',
    { 'data-customer-id': customer.customerId },
    h('td', {}, customer.customerId),
    h('td', { class: 'name' }, name),
    h('td', {}, customer.company || ''),
    h('td', {}, customer.email || ''),
    h('td', {}, customer.country || ''),
    h('td', {}, customer.handEdited ? h('span', { class: 'badge edited' }, 'hand-edited') : ''),
    h(
      'td',
      { class: 'row-actions' },
      h('button', { type: 'button', class: 'link', onclick: () => openEditor(customer) }, 'Open'),
      h('button', { type: 'button', class: 'link danger', onclick: () => remove(customer) }, 'Delete'),
    ),
  );
}

function buildEditor() {
  const fields = FIELDS.map(([key, label, type]) => {
    const attrs = { id: `field-${key}`, name: key, required: REQUIRED.has(key) };
    const input = type === 'textarea' ? h('textarea', { ...attrs, rows: 3 }) : h('input', { ...attrs, type });
    const error = h('p', { class: 'field-error', id: `customer-${key}-error` });
    return h('div', { class: `field ${type === 'textarea' ? 'wide' : ''}` }, h('label', { for: attrs.id }, label), input, error);
  });
  $('editor-fields').replaceChildren(...fields);
}

function openEditor(customer) {
  state.editing = customer;
  clearProblems($('editor-form'), 'editor-error');
  $('editor-title').textContent = customer ? `Customer ${customer.customerId}` : 'New customer';
  $('editor-meta').textContent = customer
    ? `${customer.handEdited ? 'Hand-edited (a re-sync never overwrites it)' : 'As imported'} · ` +
      `created ${when(customer.createdAt)} · updated ${when(customer.updatedAt)}`
    : 'Leave the id empty to have one generated.';
  for (const [key] of FIELDS) $(`field-${key}`).value = (customer && customer[key]) || '';
  $('field-customerId').readOnly = Boolean(customer);
  $('editor-delete').hidden = !customer;
  $('editor').hidden = false;
  $('field-firstName').focus();
}

function closeEditor() {
  state.editing = null;
  $('editor').hidden = true;
}

/** What to send: a new customer's filled-in fields, or an edit's changed fields (an emptied one becomes null). */
function changes(customer) {
  const body = {};
  for (const [key] of FIELDS) {
    const value = $(`field-${key}`).value.trim();
    if (!customer) {
      if (value) body[key] = value;
    } else if (key !== 'customerId' && value !== (customer[key] || '')) {
      body[key] = value || (REQUIRED.has(key) ? '' : null);
    }
  }
  return body;
}

async function save(event) {
  event.preventDefault();
  clearProblems($('editor-form'), 'editor-error');
  const customer = state.editing;
  try {
    const saved = customer
      ? await api('PATCH', `/customers/${encodeURIComponent(customer.customerId)}`, changes(customer))
      : await api('POST', '/customers', changes(null));
    openEditor(saved);
    $('customers-notice').textContent = `Customer ${saved.customerId} saved.`;
    await page(state.cursor, state.cursors);
  } catch (error) {
    showProblem(error, 'customer', 'editor-error');
  }
}

async function remove(customer) {
  const name = [customer.firstName, customer.lastName].filter(Boolean).join(' ');
  if (!(await confirmDelete(`Delete customer ${customer.customerId} (${name})? This cannot be undone.`))) return;
  try {
    await api('DELETE', `/customers/${encodeURIComponent(customer.customerId)}`);
    if (state.editing && state.editing.customerId === customer.customerId) closeEditor();
    $('customers-notice').textContent = `Customer ${customer.customerId} deleted.`;
    await page(state.cursor, state.cursors);
  } catch (error) {
    showProblem(error, 'search', 'search-error');
  }
}

function confirmDelete(message) {
  const dialog = $('confirm-dialog');
  $('confirm-message').textContent = message;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

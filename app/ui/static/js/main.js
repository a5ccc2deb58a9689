// Entry point: picks the view from the URL, runs the status line and the token prompt.

import { onTokenNeeded, storeToken } from './api.js';
import { $ } from './dom.js';
import { showCustomers } from './customers.js';
import { showImport } from './imports.js';
import { showJobs } from './jobs.js';

const VIEWS = { '/ui': ['import', showImport], '/ui/jobs': ['jobs', showJobs], '/ui/customers': ['customers', showCustomers] };
const STATUS_SECONDS = 10;

/** The token dialog: resolves when the operator entered a token (kept in sessionStorage for this tab). */
function promptToken(message, refused) {
  const dialog = $('token-dialog');
  $('token-message').textContent = message;
  $('token-error').textContent = refused ? 'Wrong token: the service answered 401.' : '';
  $('token-input').value = '';
  return new Promise((resolve) => {
    $('token-form').addEventListener(
      'submit',
      () => {
        storeToken($('token-input').value.trim());
        resolve();
      },
      { once: true },
    );
    if (!dialog.open) dialog.showModal();
  });
}

function blockEscape(event) {
  event.preventDefault(); // the dashboard cannot work without a token: the dialog stays until one is entered
}

/** "Database up · embedded · version 0.1.0", from the open GET /health (no token needed). */
async function refreshStatus() {
  const line = $('status-line');
  try {
    const response = await fetch('/health', { headers: { accept: 'application/json' } });
    const body = await response.json();
    const up = body.database === 'up';
    line.textContent = `Database ${up ? 'up' : 'DOWN'} · ${body.databaseServer} · version ${body.version}`;
    line.dataset.state = up ? 'up' : 'down';
  } catch {
    line.textContent = 'Service unreachable';
    line.dataset.state = 'down';
  }
}

function start() {
  const path = location.pathname.replace(/\/+$/, '') || '/ui';
  const [name, show] = VIEWS[path] || VIEWS['/ui'];
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
  }
  $(`view-${name}`).hidden = false;
  $('token-dialog').addEventListener('cancel', blockEscape);
  onTokenNeeded(promptToken);
  refreshStatus();
  setInterval(refreshStatus, STATUS_SECONDS * 1000);
  show();
}

start();

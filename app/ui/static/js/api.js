// fetch with the API token (kept in sessionStorage) and application/problem+json errors as ApiError.

const TOKEN_KEY = 'customer-import.api-token';
let askToken = null; // (message) => Promise<void>, set by main.js; resolves once a new token is stored
let asking = null; // the pending prompt: concurrent 401s share one

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = (problem && (problem.detail || problem.title)) || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.title = (problem && problem.title) || '';
    this.detail = detail;
    this.errors = (problem && Array.isArray(problem.errors) && problem.errors) || [];
    this.problem = problem || {}; // the whole problem+json body: some carry more (the preview's `columns`)
  }

  /** "Title: detail", or the detail alone when the title adds nothing. */
  get text() {
    return this.title && !this.detail.startsWith(this.title) ? `${this.title}: ${this.detail}` : this.detail;
  }
}

export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const storeToken = (value) => sessionStorage.setItem(TOKEN_KEY, value);
export function onTokenNeeded(prompt) {
  askToken = prompt;
}

async function tokenNeeded(refused) {
  if (!asking) {
    const message = refused
      ? 'The token was refused (401 Unauthorized). Enter the API token again.'
      : 'This service needs its API token (API_TOKEN).';
    asking = askToken(message, refused).finally(() => {
      asking = null;
    });
  }
  return asking;
}

/** One request; on 401 asks for the token and tries again. Returns the JSON body (null for 204). `signal`: an
 * AbortSignal that abandons it (the server then cancels its work). */
export async function api(method, path, body, signal) {
  for (;;) {
    const sent = token();
    const headers = { accept: 'application/json' };
    if (sent) headers.authorization = `Bearer ${sent}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (response.status === 401 && askToken) {
      await tokenNeeded(Boolean(sent) && sent === token());
      continue;
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
}

/** A URL for EventSource, which cannot send headers: the token goes in the query (that route accepts it). */
export function streamUrl(path) {
  const sent = token();
  return sent ? `${path}?access_token=${encodeURIComponent(sent)}` : path;
}

/** A URL a browser downloads through a plain link, which cannot send headers: the token goes in the query (the
 * export route accepts it there). `query`: an object of parameters. */
export function downloadUrl(path, query) {
  const params = new URLSearchParams(query);
  const sent = token();
  if (sent) params.set('access_token', sent);
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Show an ApiError next to the fields it names (`<prefix>-<key>-error`), the rest in `formErrorId`. */
export function showProblem(error, prefix, formErrorId) {
  const form = document.getElementById(formErrorId);
  const unplaced = [];
  for (const item of error.errors || []) {
    const slot = item.key && document.getElementById(`${prefix}-${item.key}-error`);
    if (slot) slot.textContent = item.message;
    else unplaced.push(item.key ? `${item.key}: ${item.message}` : item.message);
  }
  const text = error instanceof ApiError ? error.text : String(error.message || error);
  form.textContent = unplaced.length ? `${text} (${unplaced.join('; ')})` : text;
}

export function clearProblems(container, formErrorId) {
  for (const slot of container.querySelectorAll('.field-error')) slot.textContent = '';
  document.getElementById(formErrorId).textContent = '';
}

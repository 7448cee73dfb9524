// The Ferrocart HTTP API, as docs/api.md describes it, plus the session and the configuration.

let config = null;

/** Reads config.json (written next to the files by `make dev` or a deployment). */
export async function loadConfig() {
  const response = await fetch('config.json', { cache: 'no-store' });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  config = await response.json();
  config.api_base = (config.api_base ?? '').replace(/\/$/, '');
  return config;
}

export const settings = () => config;

/** A failed call: `status`, the problem+json body when the API sent one, and the response's
 *  headers (`Retry-After` of a 503, when the browser lets the page read it). */
export class ApiError extends Error {
  constructor(status, body, headers = null) {
    const problem = body && typeof body === 'object' && body.type ? body : null;
    super(problem?.detail ?? body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.headers = headers;
  }
  /** The problem type's last segment: 'validation-error', 'already-shipped', … */
  get kind() { return this.problem?.type?.split('/').pop() ?? null; }
}

const SESSION_KEY = 'ferrocart.session';
const listeners = new Set();
// The dev sign-in's session is kept across tabs and restarts (localStorage); a Cognito one only
// for the tab's life (sessionStorage, see cognito.js).
const sessions = () => (config?.auth?.mode === 'cognito' ? sessionStorage : localStorage);

/** The signed-in shopper: `{token, sub, admin, exp}` (and `name`, `email` from Cognito), or null. */
export function session() {
  try {
    const saved = JSON.parse(sessions().getItem(SESSION_KEY) ?? 'null');
    if (saved && saved.exp * 1000 > Date.now()) return saved;
  } catch { /* a damaged entry is no session */ }
  return null;
}

export function onSessionChange(listener) { listeners.add(listener); }

/** Forgets the session in this browser (a token the API refused, or the first step of signing out). */
export function signOut() {
  sessions().removeItem(SESSION_KEY);
  for (const listener of listeners) listener(null);
}

/** Keeps a session and tells the listeners. */
export function keepSession(saved) {
  sessions().setItem(SESSION_KEY, JSON.stringify(saved));
  for (const listener of listeners) listener(saved);
  return saved;
}

/** Keeps a token, reading who it is for from its (already verified by the API) claims. */
export function keepToken(token) {
  const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  const claims = JSON.parse(atob(payload));
  const groups = claims['cognito:groups'] ?? [];
  return keepSession({ token, sub: claims.sub, admin: groups.includes('admin'), exp: claims.exp });
}

/** Cognito mode: the managed login's sign-in and sign-out (cognito.js, loaded only then). */
export const cognito = () => import('./cognito.js');

/** Local mode: asks the local cloud for a token (`make dev` only). */
export async function devSignIn(sub, admin) {
  const response = await fetch(config.auth.sign_in_url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sub, admin }),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return keepToken(body.token);
}

/** Calls the API. Resolves to `{data, headers}`; rejects with an ApiError for any non-2xx. */
export async function call(method, path, { body, headers = {} } = {}) {
  const sent = { ...headers };
  if (body !== undefined) sent['content-type'] = 'application/json';
  const token = session()?.token;
  if (token) sent.authorization = `Bearer ${token}`;
  const response = await fetch(config.api_base + path, {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!response.ok) {
    // The authorizer refused the token (expired, or signed by another key): sign out.
    if (response.status === 401 && token) signOut();
    throw new ApiError(response.status, data, response.headers);
  }
  return { data, headers: response.headers };
}

export const get = (path) => call('GET', path).then((r) => r.data);

export const query = (params) => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : '';
};

// The shopper's cart id, kept per customer in this browser.
const cartKey = () => `ferrocart.cart.${session()?.sub}`;

/** The caller's cart, created on first use (or when the kept one is gone). */
export async function cart({ create = true } = {}) {
  const id = localStorage.getItem(cartKey());
  if (id) {
    try { return await get(`/carts/${encodeURIComponent(id)}`); } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
    }
  }
  if (!create) return null;
  const { data } = await call('POST', '/carts');
  localStorage.setItem(cartKey(), data.id);
  return data;
}

/** After a checkout the cart belongs to the order: the next item starts a new cart. */
export function forgetCart() { localStorage.removeItem(cartKey()); }

export const setQuantity = (cartId, sku, quantity) =>
  call('PUT', `/carts/${encodeURIComponent(cartId)}/items/${encodeURIComponent(sku)}`, { body: { quantity } }).then((r) => r.data);

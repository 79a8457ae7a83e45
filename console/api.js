// api.js - calls to sessiond from the console. The API key lives in
// sessionStorage (this browser tab only) and goes out as X-Api-Key on
// every call; it is never put in a URL.

const KEY = 'sessiond.apiKey';
// The API is the console's parent path: /console/ -> /, which keeps the
// console working behind a proxy that mounts sessiond under a prefix.
const BASE = new URL('../', window.location.href);

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (k) => sessionStorage.setItem(KEY, k),
  clear: () => sessionStorage.removeItem(KEY),
};

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

// A path from segments, each percent-encoded: seg`users/${id}/sessions`.
export function seg(strings, ...values) {
  return strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]) : ''), '');
}

// Calls method path (relative, e.g. "users/alice/sessions?limit=100").
// Resolves to the parsed JSON (or text, or null for 204); rejects with an
// ApiError carrying the problem's detail. opts.key overrides the stored key
// (sign-in), opts.quiet401 skips the unauthorized handler, opts.json is a
// value sent as the JSON body.
export async function call(method, path, opts = {}) {
  const headers = { Accept: 'application/json, text/plain' };
  const k = opts.key !== undefined ? opts.key : key.get();
  if (k) headers['X-Api-Key'] = k;
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.json);
  }
  let res;
  try {
    res = await fetch(new URL(path, BASE), init);
  } catch (e) {
    throw new ApiError(0, 'sessiond did not answer: is it still running?');
  }
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  let body = null;
  try {
    body = type.includes('json') ? await res.json() : await res.text();
  } catch (e) {
    body = null;
  }
  if (!res.ok) {
    const detail = (body && typeof body === 'object' && body.detail) || res.statusText || `HTTP ${res.status}`;
    const err = new ApiError(res.status, detail);
    if (res.status === 401 && !opts.quiet401) onUnauthorized(err);
    throw err;
  }
  return body;
}

// Whether the console can work with k (or with no key at all): tries one
// call of each scope it needs. Resolves to null when it can, or to a
// sentence saying why not.
export async function probe(k) {
  const who = 'console-sign-in-check';
  try {
    await call('GET', seg`users/${who}/sessions?limit=1`, { key: k, quiet401: true });
    await call('GET', seg`users/${who}/events?limit=1`, { key: k, quiet401: true });
    return null;
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    if (e.status === 401) return k ? 'sessiond does not know this key.' : 'sessiond asks for an API key.';
    // Without a key, a 403 is protected mode refusing this page's address:
    // its detail says why and what to do.
    if (e.status === 403 && !k) return e.message;
    if (e.status === 403) return 'This key lacks a scope the console needs: it needs both sessions and admin.';
    return e.message;
  }
}

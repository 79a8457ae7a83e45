// account.js - the self-service page: the signed-in user's own sessions
// ("Your devices") with sign-out buttons. It calls sessiond's /me/sessions
// routes with the user's session cookie (same origin), or with a session
// token pasted into the page (kept in this tab's sessionStorage, sent as
// Authorization: Bearer, never put in a URL). No API key is involved.
// Text from sessions is always inserted as text (dom.js), never as HTML.

import { $, h, clear } from '../console/dom.js';
import * as fmt from '../console/format.js';
import { describeUserAgent } from '../console/ua.js';

const TOKEN = 'sessiond.sessionToken';
// The API is the page's parent path: /account/ -> /.
const BASE = new URL('../', window.location.href);

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function call(method, path) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(new URL(path, BASE), { method, headers, cache: 'no-store', credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, 'the server did not answer; try again');
  }
  if (res.status === 204) return null;
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, (body && body.detail) || `HTTP ${res.status}`);
  return body;
}

function show(view) {
  $('view-token').hidden = view !== 'token';
  $('view-devices').hidden = view !== 'devices';
}

function status(text) {
  $('status').textContent = text;
}

function device(s) {
  const browser = describeUserAgent(s.userAgent) || s.deviceInfo || s.deviceId || 'Unknown device';
  const rows = [
    ['Device', s.deviceInfo || s.deviceId],
    ['IP address', s.ipAddress],
    ['Location', fmt.location(s.geoLocation)],
    ['Signed in', s.createdAt && `${fmt.absolute(s.createdAt)} (${fmt.relative(s.createdAt)})`],
    ['Last active', s.lastSeen && fmt.relative(s.lastSeen)],
  ].filter(([, v]) => v);
  const button = h('button', {
    type: 'button',
    class: s.current ? 'link' : 'danger',
    'data-action': 'sign-out',
    onclick: () => signOut(s),
  }, s.current ? 'Sign out here' : 'Sign out');
  return h('li', { class: s.current ? 'device current' : 'device', 'data-session-id': s.sessionId },
    h('div', {},
      h('div', { class: 'what' }, browser, s.current ? h('span', { class: 'badge-here' }, 'This device') : null),
      h('dl', {}, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
    button);
}

async function load() {
  try {
    const body = await call('GET', 'me/sessions?limit=1000');
    const list = $('devices');
    clear(list);
    // This device first, then the others as the server orders them (latest activity first).
    const sessions = [...body.sessions].sort((a, b) => Number(b.current) - Number(a.current));
    for (const s of sessions) list.append(device(s));
    const others = body.sessions.filter((s) => !s.current).length;
    $('summary').textContent = others === 0 ? 'Only this device is signed in.'
      : `This device and ${others} other${others === 1 ? '' : 's'} are signed in.`;
    $('sign-out-others').hidden = others === 0;
    status('');
    show('devices');
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN);
      status('You are not signed in here.');
      show('token');
    } else {
      status(`Your sessions could not be loaded: ${e.message}`);
    }
  }
}

async function signOut(s) {
  $('action-error').textContent = '';
  try {
    await call('DELETE', `me/sessions/${encodeURIComponent(s.sessionId)}`);
  } catch (e) {
    if (e.status !== 404) { // already gone: the list below shows it
      $('action-error').textContent = `That device could not be signed out: ${e.message}`;
      return;
    }
  }
  await load();
}

async function signOutOthers() {
  $('action-error').textContent = '';
  try {
    await call('DELETE', 'me/sessions');
  } catch (e) {
    $('action-error').textContent = `The other devices could not be signed out: ${e.message}`;
    return;
  }
  await load();
}

$('sign-out-others').addEventListener('click', signOutOthers);
$('token-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const token = $('token').value.trim();
  if (!token) {
    $('token-error').textContent = 'Paste your session token.';
    return;
  }
  sessionStorage.setItem(TOKEN, token);
  $('token').value = '';
  $('token-error').textContent = '';
  await load();
  if (!$('view-token').hidden) $('token-error').textContent = 'This token is not a valid session.';
});
load();

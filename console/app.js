// app.js - the operator console: sign-in, overview, a user's sessions, a
// session's detail and history; the Incident view is incident.js. Views are
// sections of index.html switched by the URL's hash (#/overview,
// #/users/<id>, #/sessions/<id>, #/incident), so the browser's back button
// and bookmarks work.

import { ApiError, call, key, probe, seg, setUnauthorizedHandler } from './api.js';
import { Series, drawChart } from './chart.js';
import { confirmDialog } from './confirm.js';
import { $, clear, h, setValue } from './dom.js';
import * as fmt from './format.js';
import { showIncident } from './incident.js';
import { bucketDelta, quantile, summarize } from './metrics.js';
import { describeUserAgent } from './ua.js';

const REFRESH_MS = 5000;
const VIEWS = ['view-login', 'view-overview', 'view-users', 'view-session', 'view-incident'];
let mode = null; // 'key' (signed in with a key), 'open' (no keys configured), null

// ---- shell ---------------------------------------------------------------

function show(view, title) {
  $('booting').hidden = true;
  for (const v of VIEWS) $(v).hidden = v !== view;
  $('view-error').hidden = true;
  $('nav').hidden = view === 'view-login';
  const current = {
    'nav-overview': view === 'view-overview',
    'nav-users': view === 'view-users' || view === 'view-session',
    'nav-incident': view === 'view-incident',
  };
  for (const [id, on] of Object.entries(current)) {
    if (on) $(id).setAttribute('aria-current', 'page');
    else $(id).removeAttribute('aria-current');
  }
  document.title = `${title} · sessiond console`;
  if (view !== 'view-overview') stopOverview();
}

function showError(message) {
  const el = $('view-error');
  el.textContent = message;
  el.hidden = false;
}

let toastTimer = 0;
function toast(message) {
  const el = $('status');
  el.textContent = message;
  el.classList.add('shown');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('shown'), 6000);
}

function authState() {
  $('auth-state').textContent =
    mode === 'key' ? 'Signed in with an API key' : mode === 'open' ? 'No key needed (loopback, no --api-keys)' : '';
  $('forget-key').hidden = mode !== 'key';
}

function timeEl(iso, text) {
  return h('time', { datetime: iso, title: fmt.absolute(iso) }, text);
}

// ---- sign-in ---------------------------------------------------------------

function showLogin(message) {
  mode = null;
  authState();
  show('view-login', 'Sign in');
  $('login-error').textContent = message || '';
  $('api-key').focus();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const k = $('api-key').value.trim();
  if (!k) {
    $('login-error').textContent = 'Enter the API key.';
    return;
  }
  const button = ev.submitter || $('login-form').querySelector('button');
  button.disabled = true;
  $('login-error').textContent = '';
  try {
    const problem = await probe(k);
    if (problem) {
      $('login-error').textContent = problem;
      $('api-key').select();
      return;
    }
    key.set(k);
    $('api-key').value = '';
    mode = 'key';
    authState();
    route(true);
  } finally {
    button.disabled = false;
  }
});

$('forget-key').addEventListener('click', () => {
  key.clear();
  showLogin('Key forgotten. It is no longer kept in this tab.');
});

setUnauthorizedHandler(() => {
  key.clear();
  showLogin('sessiond no longer accepts the key (was it rotated?). Sign in again.');
});

// ---- overview ----------------------------------------------------------------

const series = { active: new Series(), rps: new Series(), lat: new Series(), err: new Series() };
let previous = null; // {at, summary}
let overviewTimer = 0;
let refreshing = false;
let refreshSeq = 0;

function stopOverview() {
  clearInterval(overviewTimer);
  overviewTimer = 0;
}

function startOverview() {
  stopOverview();
  refreshOverview();
  overviewTimer = setInterval(() => {
    if (!document.hidden) refreshOverview();
  }, REFRESH_MS);
}

async function refreshOverview() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [text, ready] = await Promise.all([
      call('GET', 'metrics'),
      call('GET', 'readyz').then(
        () => true,
        (e) => (e.status === 503 ? false : Promise.reject(e)),
      ),
    ]);
    renderOverview(summarize(String(text)), ready, performance.now());
  } catch (e) {
    showError(`Could not read the metrics: ${e.message}`);
  } finally {
    refreshing = false;
  }
}

function renderOverview(s, ready, now) {
  const prev = previous;
  const dt = prev ? (now - prev.at) / 1000 : 0;
  const rps = prev && dt > 0 ? Math.max(0, s.requests - prev.summary.requests) / dt : null;
  const interval = prev ? bucketDelta(s.validationBuckets, prev.summary.validationBuckets) : null;
  const dReq = prev ? s.requests - prev.summary.requests : 0;
  const dErr = prev ? s.errors5xx - prev.summary.errors5xx : 0;
  previous = { at: now, summary: s };

  setValue('ov-active', fmt.count(s.active), s.active);
  setValue('ov-rps', rps === null ? 'measuring…' : fmt.rate(rps), rps);
  setValue('ov-requests', fmt.count(s.requests), s.requests);
  setValue('ov-p50', fmt.latency(s.p50), s.p50);
  setValue('ov-p95', fmt.latency(s.p95), s.p95);
  setValue('ov-p99', fmt.latency(s.p99), s.p99);
  setValue('ov-validations', fmt.count(s.validations), s.validations);
  setValue('ov-errors', fmt.percent(s.errorRate), s.errorRate);
  setValue('ov-4xx', fmt.percent(s.clientErrorRate), s.clientErrorRate);
  const healthy = ready && !s.storeBroken;
  setValue('ov-ready', healthy ? 'Ready' : 'Not ready', healthy ? 1 : 0);
  $('ov-ready').className = `big ${healthy ? 'good' : 'bad'}`;
  setValue('ov-wpc', s.writesPerCommit === null ? '–' : s.writesPerCommit.toFixed(2), s.writesPerCommit);
  setValue('ov-expired', fmt.count(s.expired), s.expired);
  setValue('ov-audit', fmt.count(s.auditRecords), s.auditRecords);
  setValue('ov-audit-dropped', fmt.count(s.auditDropped), s.auditDropped);
  $('ov-audit-dropped').className = s.auditDropped > 0 ? 'bad' : '';

  series.active.push(s.active);
  if (prev) {
    series.rps.push(rps);
    series.lat.push(interval ? quantile(0.95, interval) : null);
    series.err.push(dReq > 0 ? dErr / dReq : null);
  }
  drawCharts();
  $('ov-updated').textContent = `updated ${fmt.absolute(new Date().toISOString()).slice(11)}`;
  $('view-overview').dataset.refreshed = String(++refreshSeq);
}

function drawCharts() {
  if ($('view-overview').hidden) return;
  drawChart($('ch-active'), series.active, fmt.count);
  drawChart($('ch-rps'), series.rps, fmt.rate);
  drawChart($('ch-lat'), series.lat, fmt.latency, 'no validations in the last intervals');
  drawChart($('ch-err'), series.err, fmt.percent, 'no requests in the last intervals');
}

$('ov-refresh').addEventListener('click', () => refreshOverview());
window.addEventListener('resize', () => drawCharts());

// ---- a user's sessions -----------------------------------------------------

let currentUser = null;

async function fetchAllSessions(userId) {
  const all = [];
  let cursor = null;
  for (let page = 0; page < 50; page++) {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const body = await call('GET', `${seg`users/${userId}/sessions`}?limit=100${q}`);
    all.push(...body.sessions);
    cursor = body.nextCursor;
    if (!cursor) break;
  }
  // Newest first; the id breaks ties so the order is stable.
  return all.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || a.sessionId.localeCompare(b.sessionId));
}

// At most n code points of text, with an ellipsis when cut (the detail
// view shows the whole value).
function clip(text, n) {
  const chars = Array.from(text);
  return chars.length > n ? `${chars.slice(0, n - 1).join('')}…` : text;
}

function deviceCell(s) {
  const main = clip(s.deviceInfo || s.deviceId || 'Unknown device', 60);
  const sub = s.deviceInfo && s.deviceId ? clip(s.deviceId, 40) : null;
  return h('span', {}, h('span', { class: 'strong' }, main), sub && h('span', { class: 'sub' }, sub));
}

function sessionRow(s, count) {
  const ua = describeUserAgent(s.userAgent);
  const name = `${ua || s.deviceInfo || 'unknown browser'} (${s.sessionId})`;
  const revoke = h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke session ${name}` }, 'Revoke');
  const others = h('button', { type: 'button', class: 'small', 'aria-label': `Revoke all sessions but ${name}`, disabled: count < 2 },
    'Revoke all others');
  revoke.addEventListener('click', () => revokeOne(s, revoke));
  others.addEventListener('click', () => revokeOthers(s, others));
  return h('tr', { 'data-session-id': s.sessionId },
    h('td', { 'data-label': 'Device', class: 'wrap' }, deviceCell(s)),
    h('td', { 'data-label': 'Browser', class: 'ua' }, ua || '—'),
    h('td', { 'data-label': 'IP address', class: 'mono ip' }, s.ipAddress || '—'),
    h('td', { 'data-label': 'Location', class: 'wrap' }, clip(fmt.location(s.geoLocation), 60) || '—'),
    h('td', { 'data-label': 'MFA' }, h('span', { class: s.mfa ? 'badge good' : 'badge' }, s.mfa ? 'Yes' : 'No')),
    h('td', { 'data-label': 'Created', class: 'when' }, timeEl(s.createdAt, fmt.relative(s.createdAt))),
    h('td', { 'data-label': 'Last seen', class: 'when' }, timeEl(s.lastSeen, fmt.relative(s.lastSeen))),
    h('td', { 'data-label': 'Expires', class: 'when' }, timeEl(s.expiry, fmt.relative(s.expiry))),
    h('td', { class: 'row-actions' },
      h('a', { href: `#/sessions/${encodeURIComponent(s.sessionId)}`, class: 'button small' }, 'Details'),
      revoke, others));
}

async function loadUser(userId, { focus = false } = {}) {
  currentUser = userId;
  $('user-id').value = userId;
  $('user-result').hidden = false;
  $('user-title').textContent = `Sessions of ${userId}`;
  $('user-summary').textContent = 'Loading…';
  let sessions;
  try {
    sessions = await fetchAllSessions(userId);
  } catch (e) {
    if (e.status === 401) return;
    $('user-summary').textContent = '';
    clear($('sessions-table').tBodies[0]);
    showError(`Could not list the sessions: ${e.message}`);
    return;
  }
  if (currentUser !== userId) return; // another search started meanwhile
  const body = $('sessions-table').tBodies[0];
  clear(body);
  for (const s of sessions) body.append(sessionRow(s, sessions.length));
  $('sessions-table').hidden = sessions.length === 0;
  $('user-summary').textContent = sessions.length === 0
    ? 'No active sessions. Ended sessions are in the audit trail.'
    : `${sessions.length} active session${sessions.length === 1 ? '' : 's'}, newest first.`;
  if (focus) $('user-title').focus();
  loadActivity(userId);
}

// The user's latest audit events (ended sessions included), newest first.
const ACTIVITY_ROWS = 20;
async function loadActivity(userId) {
  const body = $('activity-table').tBodies[0];
  let events = [];
  try {
    // One page, newest first: the latest events however long the history.
    const r = await call('GET', `${seg`users/${userId}/events`}?order=desc&limit=${ACTIVITY_ROWS}`);
    events = r.events;
  } catch (e) {
    if (e.status !== 401) showError(`Could not read the user's history: ${e.message}`);
    return;
  }
  if (currentUser !== userId) return;
  clear(body);
  for (const e of events) body.append(eventRow(e, true));
  $('activity').hidden = events.length === 0;
}

async function revokeOne(s, opener) {
  const what = describeUserAgent(s.userAgent) || s.deviceInfo || 'this device';
  const ok = await confirmDialog({
    title: 'Revoke this session?',
    text: `The session on ${what} (${s.sessionId}) ends at once: its token stops working.`,
    ok: 'Revoke session',
    opener,
    fallback: $('user-title'),
  });
  if (!ok) return;
  try {
    await call('DELETE', seg`sessions/${s.sessionId}`);
    toast(`Session ${s.sessionId} revoked.`);
  } catch (e) {
    if (e.status === 401) return;
    if (e.status === 404) toast('That session had already ended.');
    else showError(`Could not revoke: ${e.message}`);
  }
  await loadUser(s.userId);
  $('user-title').focus();
}

async function revokeOthers(s, opener) {
  const what = describeUserAgent(s.userAgent) || s.deviceInfo || 'this device';
  const ok = await confirmDialog({
    title: 'Revoke all other sessions?',
    text: `Every session of ${s.userId} ends at once except the one on ${what} (${s.sessionId}).`,
    ok: 'Revoke the others',
    opener,
    fallback: $('user-title'),
  });
  if (!ok) return;
  try {
    const r = await call('DELETE', `${seg`users/${s.userId}/sessions`}?except=${encodeURIComponent(s.sessionId)}`);
    const n = r && typeof r.deleted === 'number' ? r.deleted : 0;
    toast(`${n} other session${n === 1 ? '' : 's'} revoked.`);
  } catch (e) {
    if (e.status === 401) return;
    showError(`Could not revoke: ${e.message}`);
  }
  await loadUser(s.userId);
  $('user-title').focus();
}

$('user-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const id = $('user-id').value.trim();
  if (!id) {
    showError('Enter a user id.');
    $('user-id').focus();
    return;
  }
  const target = `#/users/${encodeURIComponent(id)}`;
  if (window.location.hash === target) loadUser(id, { focus: true });
  else window.location.hash = target;
});

$('user-reload').addEventListener('click', () => currentUser && loadUser(currentUser));

// ---- one session -----------------------------------------------------------

let eventsNext = null;
let sessionShown = null;

function metaRow(label, ...value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, ...value));
}

function renderMeta(s) {
  const dl = $('session-meta');
  clear(dl);
  const ua = describeUserAgent(s.userAgent);
  const bound = s.bind ? [s.bind.ip && 'its IP network', s.bind.userAgent && 'its user agent'].filter(Boolean) : [];
  const rows = [
    metaRow('Session id', h('code', {}, s.sessionId)),
    metaRow('User', h('a', { href: `#/users/${encodeURIComponent(s.userId)}` }, s.userId)),
    metaRow('Device', s.deviceInfo || '—', s.deviceId ? h('span', { class: 'sub' }, `id ${s.deviceId}`) : null),
    metaRow('Browser', ua || '—', s.userAgent ? h('span', { class: 'sub mono' }, s.userAgent) : null),
    metaRow('IP address', s.ipAddress || '—'),
    metaRow('Location', fmt.location(s.geoLocation) || '—'),
    metaRow('MFA', s.mfa ? 'Yes' : 'No'),
    s.authTime ? metaRow('Authenticated', timeEl(s.authTime, `${fmt.absolute(s.authTime)} (${fmt.relative(s.authTime)})`)) : null,
    s.acr ? metaRow('Assurance (acr)', s.acr) : null,
    Array.isArray(s.amr) && s.amr.length ? metaRow('Methods (amr)', s.amr.join(', ')) : null,
    metaRow('Created', timeEl(s.createdAt, `${fmt.absolute(s.createdAt)} (${fmt.relative(s.createdAt)})`)),
    metaRow('Last seen', timeEl(s.lastSeen, `${fmt.absolute(s.lastSeen)} (${fmt.relative(s.lastSeen)})`)),
    metaRow('Expires', timeEl(s.expiry, `${fmt.absolute(s.expiry)} (${fmt.relative(s.expiry)})`)),
    metaRow('Absolute expiry', timeEl(s.absoluteExpiry, `${fmt.absolute(s.absoluteExpiry)} (${fmt.relative(s.absoluteExpiry)})`)),
    metaRow('Version', String(s.version)),
    bound.length ? metaRow('Bound to', bound.join(' and ')) : null,
    metaRow('Data', h('pre', {}, JSON.stringify(s.data ?? {}, null, 2))),
  ];
  dl.append(...rows.filter(Boolean)); // rows a session does not have are null
}

const EVENT_TEXT = {
  created: 'Created',
  updated: 'Updated',
  refreshed: 'Token rotated',
  renewed: 'Token renewed (MFA)',
  revoked: 'Revoked',
  expired: 'Expired',
  evicted: 'Evicted (too many sessions)',
  token_reuse_detected: 'Token reuse detected',
};

const ENDINGS = ['revoked', 'expired', 'evicted'];

function eventRow(e, withSession = false) {
  const bad = ['revoked', 'expired', 'evicted', 'token_reuse_detected'].includes(e.event);
  const session = withSession
    ? [h('td', { 'data-label': 'Session', class: 'wrap' },
      h('a', { href: `#/sessions/${encodeURIComponent(e.sessionId)}` }, e.sessionId))]
    : [];
  return h('tr', { 'data-event': e.event },
    h('td', { 'data-label': 'Time', class: 'when' }, timeEl(e.time, fmt.absolute(e.time))),
    ...session,
    h('td', { 'data-label': 'Event' }, h('span', { class: bad ? 'badge bad' : 'badge' }, EVENT_TEXT[e.event] || e.event)),
    h('td', { 'data-label': 'Reason' }, e.reason || '—'),
    h('td', { 'data-label': 'By key', class: 'wrap' }, e.actor || '—'),
    h('td', { 'data-label': 'From', class: 'mono ip' }, e.clientAddress || '—'));
}

async function loadEvents(id, after) {
  const q = after ? `&after=${encodeURIComponent(after)}` : '';
  const page = await call('GET', `${seg`sessions/${id}/events`}?limit=100${q}`);
  if (sessionShown !== id) return null;
  const body = $('events-table').tBodies[0];
  for (const e of page.events) body.append(eventRow(e));
  eventsNext = page.next || null;
  $('events-more').hidden = !eventsNext;
  $('events-empty').hidden = body.rows.length > 0;
  return page;
}

async function loadSession(id) {
  sessionShown = id;
  eventsNext = null;
  clear($('session-meta'));
  clear($('session-actions'));
  clear($('events-table').tBodies[0]);
  $('events-more').hidden = true;
  $('events-empty').hidden = true;
  $('session-title').textContent = `Session ${id}`;
  $('session-state').textContent = 'Loading…';
  $('session-state').className = '';
  const [meta, events] = await Promise.allSettled([
    call('GET', seg`sessions/${id}`),
    loadEvents(id, null),
  ]);
  if (sessionShown !== id) return;
  const fail = [meta, events].find((r) => r.status === 'rejected' && r.reason.status === 401);
  if (fail) return;
  let userId = null;
  if (meta.status === 'fulfilled') {
    const s = meta.value;
    userId = s.userId;
    $('session-state').textContent = 'Active';
    $('session-state').className = 'badge good';
    renderMeta(s);
    const revoke = h('button', { type: 'button', class: 'danger' }, 'Revoke this session');
    revoke.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: 'Revoke this session?',
        text: `Session ${s.sessionId} of ${s.userId} ends at once: its token stops working.`,
        ok: 'Revoke session',
        opener: revoke,
        fallback: $('session-title'),
      });
      if (!ok) return;
      try {
        await call('DELETE', seg`sessions/${s.sessionId}`);
        toast(`Session ${s.sessionId} revoked.`);
      } catch (e) {
        if (e.status === 401) return;
        if (e.status !== 404) showError(`Could not revoke: ${e.message}`);
      }
      await loadSession(s.sessionId);
      $('session-title').focus();
    });
    $('session-actions').append(revoke);
  } else if (meta.reason.status === 404) {
    const list = events.status === 'fulfilled' && events.value ? events.value.events : [];
    const end = [...list].reverse().find((e) => ENDINGS.includes(e.event));
    $('session-state').textContent = end
      ? `Ended: ${EVENT_TEXT[end.event] || end.event}${end.reason && end.reason !== end.event ? ` (${end.reason})` : ''} ${fmt.relative(end.time)}`
      : 'Ended: no longer active';
    $('session-state').className = 'badge bad';
  } else {
    $('session-state').textContent = '';
    showError(`Could not read the session: ${meta.reason.message}`);
  }
  if (events.status === 'rejected') {
    if (events.reason.status === 404 && meta.status === 'rejected') {
      $('session-state').textContent = 'Unknown session: sessiond has no record of this id.';
    } else if (events.reason.status !== 404) {
      showError(`Could not read the history: ${events.reason.message}`);
    }
    $('events-empty').hidden = false;
  }
  const rows = $('events-table').tBodies[0].rows;
  if (!userId && events.status === 'fulfilled' && events.value && events.value.events.length) {
    userId = events.value.events[0].userId;
  }
  $('session-back').textContent = userId ? `← Sessions of ${userId}` : '← Sessions';
  $('session-back').href = userId ? `#/users/${encodeURIComponent(userId)}` : '#/users';
  $('view-session').dataset.events = String(rows.length);
}

$('events-more').addEventListener('click', async () => {
  if (!eventsNext || !sessionShown) return;
  try {
    await loadEvents(sessionShown, eventsNext);
  } catch (e) {
    if (e.status !== 401) showError(`Could not read more history: ${e.message}`);
  }
});

// ---- routing ----------------------------------------------------------------

function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch (e) {
    return null;
  }
}

function route(focusMain = false) {
  if (!mode) {
    showLogin();
    return;
  }
  const hash = window.location.hash.replace(/^#\/?/, '');
  const slash = hash.indexOf('/');
  const head = slash < 0 ? hash : hash.slice(0, slash);
  const arg = slash < 0 ? null : decode(hash.slice(slash + 1));
  if (head === 'users') {
    show('view-users', arg ? `Sessions of ${arg}` : 'Sessions');
    if (arg) loadUser(arg, { focus: true });
    else {
      $('user-result').hidden = true;
      currentUser = null;
      $('user-id').focus();
    }
  } else if (head === 'sessions' && arg) {
    show('view-session', `Session ${arg}`);
    loadSession(arg).then(() => $('session-title').focus());
  } else if (head === 'incident') {
    show('view-incident', 'Incident response');
    showIncident();
    $('incident-title').focus();
  } else {
    show('view-overview', 'Overview');
    startOverview();
    if (focusMain) $('overview-title').focus();
  }
}

window.addEventListener('hashchange', () => {
  $('status').classList.remove('shown');
  route(true);
});
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && overviewTimer) refreshOverview();
});

async function boot() {
  const stored = key.get();
  let problem;
  try {
    problem = await probe(stored);
  } catch (e) {
    problem = e.message;
  }
  if (!problem) {
    mode = stored ? 'key' : 'open';
    authState();
    route();
    return;
  }
  if (stored) key.clear();
  // Without a stored key, "asks for an API key" is the normal start.
  showLogin(stored || !problem.includes('asks for an API key') ? problem : '');
}

boot();

// console-check.mjs - drives sessiond's operator console in Debian's headless
// Chromium through playwright-core. Started by tests/e2e/test_console.py,
// which starts sessiond, seeds the sessions and checks the results.
//
//   node console-check.mjs CONFIG.json
//
// CONFIG: {scenario: "full" | "nokey" | "rebind" | "account" | "incident", baseUrl, key, wrongKey,
// narrowKey, user: {id, sessions: [ids, oldest first]}, unicodeUser: {id,
// sessions}, rebindHost (rebind: a name Chromium resolves to 127.0.0.1, as
// a DNS rebinding attacker's would), outDir, resultPath}. Screenshots go to outDir; what the page showed goes to
// resultPath as JSON (the Python side compares it with /metrics and the
// API). The "account" scenario drives the self-service page (/account/)
// instead: account: {token (the session the browser signs in with), other
// (a session id of the same user to sign out), tokenOnly (a token to paste
// into the page's form, without the cookie)}. The "incident" scenario is
// incident-check.mjs (incident: {phase, network, ...}). Any failed step exits 1 with a message naming it.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { incident } from './incident-check.mjs';

const cfg = JSON.parse((await import('node:fs')).readFileSync(process.argv[2], 'utf8'));
const STEP_TIMEOUT = 30000;
const result = { screenshots: [], steps: [] };
const problems = { console: [], pageErrors: [], csp: [], badResponses: [] };
let step = 'start';
// Error statuses the page is expected to meet: "METHOD /path".
const expectedErrors = new Set();

function check(cond, message) {
  if (!cond) throw new Error(`${step}: ${message}`);
}

mkdirSync(cfg.outDir, { recursive: true });

// Calls sessiond directly (not through the page), with the key.
async function api(method, path) {
  const headers = cfg.key ? { 'X-Api-Key': cfg.key } : {};
  const res = await fetch(cfg.baseUrl + path, { method, headers });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
    ...(cfg.rebindHost ? [`--host-resolver-rules=MAP ${cfg.rebindHost} 127.0.0.1`] : [])],
});

async function newPage(viewport) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  // Runs before the page's own scripts: collects CSP violations.
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const text = m.text();
    // A rebound name is plain http and not localhost, so Chromium ignores
    // the console's Cross-Origin-Opener-Policy there, and says so.
    if (cfg.rebindHost && /Cross-Origin-Opener-Policy header has been ignored/.test(text)) return;
    if (/Content Security Policy/i.test(text)) problems.csp.push(text);
    // Statuses the page expects (the sign-in check's 401s) are judged
    // through the responses below.
    else if (!/^Failed to load resource: the server responded with a status of/.test(text)) {
      problems.console.push(`${m.type()}: ${text}`);
    }
  });
  page.on('pageerror', (e) => problems.pageErrors.push(String(e)));
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const u = new URL(r.url());
    const expected = ((r.status() === 401 || r.status() === 403) && /^\/users\/console-sign-in-check\/(sessions|events)$/.test(u.pathname)) ||
      expectedErrors.has(`${r.status()} ${r.request().method()} ${u.pathname}`);
    if (!expected) problems.badResponses.push(`${r.status()} ${r.request().method()} ${u.pathname}`);
  });
  return page;
}

async function shot(page, name) {
  const file = join(cfg.outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
}

async function noHorizontalOverflow(page, what) {
  const m = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
    widest: [...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
      .slice(0, 5)
      .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`),
  }));
  check(m.scroll <= m.client, `${what}: the page scrolls sideways (${m.scroll}px > ${m.client}px; ` +
    `too wide: ${m.widest.join(', ')})`);
}

const rowsOf = (page) => page.$$eval('#sessions-table tbody tr', (trs) => trs.map((tr) => tr.dataset.sessionId));

async function searchUser(page, id, expectRows) {
  await page.click('#nav-users');
  await page.fill('#user-id', id);
  await page.press('#user-id', 'Enter');
  await page.waitForFunction(
    (n) => document.querySelectorAll('#sessions-table tbody tr').length === n &&
      document.getElementById('user-summary').textContent.includes('active session'),
    expectRows);
}

const OVERVIEW_IDS = ['ov-active', 'ov-rps', 'ov-requests', 'ov-p50', 'ov-p95', 'ov-p99', 'ov-validations',
  'ov-errors', 'ov-4xx', 'ov-ready'];

// Clicks Refresh on the overview; returns the /metrics text the page used
// and what it then showed, read in the same frame as the render. A timer
// refresh landing in between makes it try again.
async function refreshOverview(page) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const seq = Number(await page.getAttribute('#view-overview', 'data-refreshed') || 0);
    const [resp] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/metrics'),
      page.click('#ov-refresh'),
    ]);
    const text = await resp.text();
    const seen = await (await page.waitForFunction(({ s, ids }) => {
      const now = Number(document.getElementById('view-overview').dataset.refreshed || 0);
      if (now <= s) return null;
      const shown = {};
      for (const id of ids) {
        const el = document.getElementById(id);
        shown[id] = { text: el.textContent, value: el.dataset.value === undefined ? null : Number(el.dataset.value) };
      }
      return { seq: now, shown };
    }, { s: seq, ids: OVERVIEW_IDS })).jsonValue();
    if (seen.seq === seq + 1) return { metricsText: text, shown: seen.shown };
  }
  throw new Error(`${step}: the overview kept refreshing under the test`);
}

async function confirm(page, buttonSelector, screenshot) {
  await page.click(buttonSelector);
  await page.waitForSelector('#confirm[open]');
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  check(focused === 'confirm-cancel', `the dialog did not take focus (focus on ${focused})`);
  if (screenshot) await shot(page, screenshot);
  await page.click('#confirm-ok');
  await page.waitForFunction(() => !document.getElementById('confirm').open);
}

async function full() {
  const [a, b, c, d] = cfg.user.sessions; // oldest first
  const page = await newPage({ width: 1280, height: 900 });

  step = 'sign-in page';
  const resp = await page.goto(`${cfg.baseUrl}/console/`);
  result.csp = resp.headers()['content-security-policy'] || null;
  await page.waitForSelector('#view-login:not([hidden])');
  check(await page.isHidden('#nav'), 'navigation shown before sign-in');
  const focused = await page.evaluate(() => document.activeElement.id);
  check(focused === 'api-key', `the key field does not have focus (${focused})`);
  await shot(page, '01-sign-in');

  step = 'wrong key';
  await page.fill('#api-key', cfg.wrongKey);
  await page.press('#api-key', 'Enter');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0);
  result.wrongKeyMessage = await page.textContent('#login-error');
  await shot(page, '02-wrong-key');

  step = 'a key without the admin scope';
  await page.fill('#api-key', cfg.narrowKey);
  await page.press('#api-key', 'Enter');
  await page.waitForFunction(() => /scope/.test(document.getElementById('login-error').textContent));
  result.narrowKeyMessage = await page.textContent('#login-error');
  check(await page.isHidden('#nav'), 'a key without admin got past sign-in');

  step = 'sign in';
  await page.fill('#api-key', cfg.key);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#view-overview:not([hidden])');
  result.storedKey = await page.evaluate(() => sessionStorage.getItem('sessiond.apiKey') === null ? 'absent' : 'present');
  result.localStorageEmpty = await page.evaluate(() => localStorage.length === 0);
  result.authState = await page.textContent('#auth-state');

  step = 'overview';
  await page.waitForFunction(() => Number(document.getElementById('view-overview').dataset.refreshed || 0) >= 1);
  await refreshOverview(page);
  result.overview = await refreshOverview(page);
  check(await page.evaluate(() => {
    const c = document.getElementById('ch-active');
    return c.width > 0 && c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v) => v !== 0);
  }), 'the active-sessions chart is blank');
  await shot(page, '03-overview');

  step = 'search a user';
  await searchUser(page, cfg.user.id, 4);
  const order = await rowsOf(page);
  check(JSON.stringify(order) === JSON.stringify([d, c, b, a]), `rows are not newest first: ${order}`);
  result.firstRowText = await page.textContent(`#sessions-table tr[data-session-id="${d}"]`);
  check(new URL(page.url()).hash.startsWith('#/users/'), `the URL does not name the user: ${page.url()}`);
  await shot(page, '04-sessions');

  step = 'recent activity: the latest events, newest first';
  await page.waitForFunction(() => !document.getElementById('activity').hidden);
  const shownActivity = await page.$$eval('#activity-table tbody tr', (trs) => trs.map((tr) => tr.dataset.event));
  const latest = await api('GET', `/users/${encodeURIComponent(cfg.user.id)}/events?order=desc&limit=20`);
  check(latest.status === 200 && JSON.stringify(shownActivity) ===
    JSON.stringify(latest.body.events.map((e) => e.event)),
  `the activity table ${JSON.stringify(shownActivity)} is not the API's newest events`);
  result.activity = shownActivity;

  step = 'keyboard: dialog opens, Escape cancels, focus returns';
  const revokeB = `#sessions-table tr[data-session-id="${b}"] button.danger`;
  await page.focus(revokeB);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#confirm[open]');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.getElementById('confirm').open);
  const back = await page.evaluate(() => document.activeElement.closest('tr') && document.activeElement.closest('tr').dataset.sessionId);
  check(back === b, `focus did not return to the row's Revoke button (${back})`);
  check((await rowsOf(page)).length === 4, 'cancelling revoked something');

  step = 'revoke one session';
  await confirm(page, revokeB, '05-confirm-revoke');
  await page.waitForFunction((id) => !document.querySelector(`#sessions-table tr[data-session-id="${id}"]`), b);
  check(JSON.stringify(await rowsOf(page)) === JSON.stringify([d, c, a]), 'the table did not drop the revoked row');
  const gone = await api('GET', `/sessions/${b}`);
  check(gone.status === 404, `the API still has the revoked session (${gone.status})`);
  result.toast = await page.textContent('#status');

  step = 'revoke all others';
  await confirm(page, `#sessions-table tr[data-session-id="${c}"] button:not(.danger)`, null);
  await page.waitForFunction(() => document.querySelectorAll('#sessions-table tbody tr').length === 1);
  check(JSON.stringify(await rowsOf(page)) === JSON.stringify([c]), 'the kept session is not the only row');
  const left = await api('GET', `/users/${encodeURIComponent(cfg.user.id)}/sessions`);
  check(JSON.stringify(left.body.sessions.map((s) => s.sessionId)) === JSON.stringify([c]),
    `the API lists ${JSON.stringify(left.body.sessions.map((s) => s.sessionId))}`);
  check(await page.isDisabled(`#sessions-table tr[data-session-id="${c}"] button:not(.danger)`),
    '"Revoke all others" is enabled with one session left');
  await shot(page, '06-after-revoke');

  step = 'session detail and history';
  await page.click(`#sessions-table tr[data-session-id="${c}"] a`);
  await page.waitForSelector('#view-session:not([hidden])');
  await page.waitForFunction(() => Number(document.getElementById('view-session').dataset.events || 0) > 0);
  result.activeDetail = {
    state: await page.textContent('#session-state'),
    meta: await page.textContent('#session-meta'),
    events: await page.$$eval('#events-table tbody tr', (trs) => trs.map((tr) => tr.dataset.event)),
  };
  await shot(page, '07-session-detail');

  step = 'history of the revoked session';
  expectedErrors.add(`404 GET /sessions/${b}`); // it has ended: the page says so
  await page.goto(`${cfg.baseUrl}/console/#/sessions/${encodeURIComponent(b)}`);
  await page.waitForFunction(() => Number(document.getElementById('view-session').dataset.events || 0) >= 2);
  result.endedDetail = {
    state: await page.textContent('#session-state'),
    back: await page.textContent('#session-back'),
    events: await page.$$eval('#events-table tbody tr', (trs) => trs.map((tr) => ({
      event: tr.dataset.event, text: tr.textContent,
    }))),
  };
  await shot(page, '08-ended-session');

  step = 'unicode user with long user agents';
  await searchUser(page, cfg.unicodeUser.id, cfg.unicodeUser.sessions.length);
  result.unicodeTitle = await page.textContent('#user-title');
  await noHorizontalOverflow(page, 'sessions at 1280px');
  await shot(page, '09-unicode-sessions');

  step = 'phone width (375px)';
  await page.setViewportSize({ width: 375, height: 812 });
  await noHorizontalOverflow(page, 'sessions at 375px');
  await shot(page, '10-phone-sessions');
  await page.click(`#sessions-table tr[data-session-id="${cfg.unicodeUser.sessions[0]}"] a`);
  await page.waitForFunction(() => Number(document.getElementById('view-session').dataset.events || 0) > 0);
  await noHorizontalOverflow(page, 'session detail at 375px');
  await shot(page, '11-phone-session');
  await page.click('#nav-overview');
  await page.waitForSelector('#view-overview:not([hidden])');
  await refreshOverview(page);
  await noHorizontalOverflow(page, 'overview at 375px');
  await shot(page, '12-phone-overview');

  step = 'another tab does not get the key';
  const other = await page.context().newPage();
  await other.goto(`${cfg.baseUrl}/console/`);
  await other.waitForSelector('#view-login:not([hidden])');
  await other.close();

  step = 'forget key';
  await page.click('#forget-key');
  await page.waitForSelector('#view-login:not([hidden])');
  result.keyAfterForget = await page.evaluate(() => sessionStorage.getItem('sessiond.apiKey'));

  result.cspViolations = await page.evaluate(() => window.__csp);
}

async function nokey() {
  const page = await newPage({ width: 1280, height: 900 });
  step = 'open console without keys';
  await page.goto(`${cfg.baseUrl}/console/`);
  await page.waitForSelector('#view-overview:not([hidden])');
  result.authState = await page.textContent('#auth-state');
  check(await page.isHidden('#forget-key'), '"Forget key" shown without a key');
  step = 'search a user without a key';
  await searchUser(page, cfg.user.id, cfg.user.sessions.length);
  await shot(page, 'nokey-sessions');
  const [first, second] = cfg.user.sessions;
  result.firstRowText = await page.textContent(`#sessions-table tr[data-session-id="${first}"]`);
  step = 'revoke without a key (a write from the page\'s own loopback origin)';
  await confirm(page, `#sessions-table tr[data-session-id="${second}"] button.danger`, null);
  await page.waitForFunction((id) => !document.querySelector(`#sessions-table tr[data-session-id="${id}"]`), second);
  const gone = await api('GET', `/sessions/${second}`);
  check(gone.status === 404, `the API still has the revoked session (${gone.status})`);
  result.cspViolations = await page.evaluate(() => window.__csp);
}

// A page whose name was rebound to 127.0.0.1 (Chromium maps cfg.rebindHost
// there): the console's files load, but sessiond answers none of its API
// calls, and a script on that page can change nothing.
async function rebind() {
  const page = await newPage({ width: 1280, height: 900 });
  const origin = `http://${cfg.rebindHost}:${new URL(cfg.baseUrl).port}`;
  step = 'the console through a rebound name';
  await page.goto(`${origin}/console/`);
  await page.waitForSelector('#view-login:not([hidden])');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0);
  result.loginMessage = await page.textContent('#login-error');
  await shot(page, 'rebind-sign-in');
  step = 'a script on the rebound page asks for a bulk delete';
  expectedErrors.add('403 POST /sessions/bulk-delete');
  result.sameNameAttack = await page.evaluate(async (user) => {
    const r = await fetch('/sessions/bulk-delete', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ userIds: [user] }),
    });
    return { status: r.status, detail: (await r.json()).detail };
  }, cfg.user.id);
  result.cspViolations = await page.evaluate(() => window.__csp);
  step = 'a page of that name posts to 127.0.0.1 itself (cross-site, no-cors)';
  // The console's CSP would block this fetch; an attacker's own page has
  // none. Any document of the rebound origin without one will do.
  await page.goto(`${origin}/healthz`);
  const [victim] = cfg.user.sessions;
  expectedErrors.add(`403 POST /sessions/${victim}/refresh`);
  const [sent] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === `/sessions/${victim}/refresh`),
    page.evaluate(async (url) => {
      await fetch(url, { method: 'POST', mode: 'no-cors' });
    }, `${cfg.baseUrl}/sessions/${encodeURIComponent(victim)}/refresh`),
  ]);
  result.crossSiteStatus = sent.status();
  const still = await api('GET', `/sessions/${victim}`);
  check(still.status === 200, `the session the page attacked is gone (${still.status})`);
}

// The self-service page: the user's devices with the cookie's session
// marked, one signed out from the page; then the narrow layout, and the
// token form for a tab without the cookie.
const devicesShown = (page) => page.$$eval('#devices li', (lis) => lis.map((li) => ({
  id: li.dataset.sessionId, current: li.classList.contains('current'), text: li.textContent,
})));

async function accountPage(viewport, token) {
  const page = await newPage(viewport);
  if (token) await page.context().addCookies([{ name: 'session', value: token, url: cfg.baseUrl }]);
  await page.goto(`${cfg.baseUrl}/account/`);
  return page;
}

async function account() {
  step = 'open /account/ with the session cookie';
  const page = await accountPage({ width: 1280, height: 900 }, cfg.account.token);
  await page.waitForFunction(() => document.body.dataset.loaded === '1');
  result.accountBefore = await devicesShown(page);
  await shot(page, 'account-devices');
  step = 'sign the other device out from the page';
  await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'DELETE' && r.status() === 204),
    page.click(`#devices li[data-session-id="${cfg.account.other}"] button[data-action="sign-out"]`),
  ]);
  await page.waitForFunction(() => document.body.dataset.loaded === '2');
  result.accountAfter = await devicesShown(page);
  result.cspViolations = await page.evaluate(() => window.__csp);
  await shot(page, 'account-after-sign-out');
  step = 'the page at 375px';
  const narrow = await accountPage({ width: 375, height: 800 }, cfg.account.token);
  await narrow.waitForFunction(() => document.body.dataset.loaded === '1');
  await noHorizontalOverflow(narrow, 'account at 375px');
  await shot(narrow, 'account-375');
  step = 'without the cookie: the token form';
  expectedErrors.add('401 GET /me/sessions');
  const bare = await accountPage({ width: 800, height: 800 }, null);
  await bare.waitForSelector('#view-token:not([hidden])');
  await bare.fill('#token', cfg.account.tokenOnly);
  await bare.click('#token-form button[type="submit"]');
  await bare.waitForFunction(() => document.body.dataset.loaded === '1');
  result.accountByToken = await devicesShown(bare);
  result.accountStorageHasToken = await bare.evaluate(() => !!sessionStorage.getItem('sessiond.sessionToken'));
  result.accountUrl = bare.url();
  await shot(bare, 'account-by-token');
}

let failed = null;
try {
  const harness = {
    cfg, newPage, check, shot, noHorizontalOverflow, result, expectedErrors, setStep: (s) => { step = s; },
  };
  await ({ nokey, rebind, full, account, incident: () => incident(harness) }[cfg.scenario] || full)();
} catch (e) {
  failed = e.message || String(e);
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages.length) await pages[0].screenshot({ path: join(cfg.outDir, 'failure.png'), fullPage: true });
  } catch (e2) {
    // the failure itself is what matters
  }
} finally {
  await browser.close();
}
result.problems = problems;
result.failed = failed;
writeFileSync(cfg.resultPath, JSON.stringify(result, null, 2));
if (failed) {
  console.error(`console check failed: ${failed}`);
  process.exit(1);
}

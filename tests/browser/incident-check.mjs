// incident-check.mjs - the console's Incident view in Chromium: the
// "incident" scenario of console-check.mjs, which passes its harness in t
// (cfg, newPage, check, shot, noHorizontalOverflow, result, expectedErrors,
// setStep). Started by tests/e2e/test_console_incident.py once per phase,
// so that the Python side checks through the HTTP API what each phase did
// (or did not do):
//
//   cancel   a bad network shows the server's problem detail; the preview
//            counts cfg.incident.matching sessions in cfg.incident.network;
//            Cancel in the dialog of both actions; a future time is refused
//            with the server's detail after the confirmation; no sideways
//            scrolling at 1280px and 375px
//   triage   the preview, then the revocation confirmed: the count revoked
//   signout  "Sign everyone out" now, confirmed: the count and the value
//
// Every wait is for a state of the page (STEP_TIMEOUT, 30 s), never a delay.

const dialogText = (page) => page.evaluate(() => ({
  title: document.getElementById('confirm-title').textContent,
  text: document.getElementById('confirm-text').textContent,
  ok: document.getElementById('confirm-ok').textContent,
}));

const focusedId = (page) => page.evaluate(() => document.activeElement && document.activeElement.id);

async function openIncident(t) {
  const page = await t.newPage({ width: 1280, height: 900 });
  t.setStep('sign in');
  await page.goto(`${t.cfg.baseUrl}/console/`);
  await page.waitForSelector('#view-login:not([hidden])');
  await page.fill('#api-key', t.cfg.key);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#view-overview:not([hidden])');
  t.setStep('open Incident');
  await page.click('#nav-incident');
  await page.waitForSelector('#view-incident:not([hidden])');
  await page.waitForFunction(() => document.getElementById('nb-current').dataset.value !== undefined);
  t.check(await focusedId(page) === 'incident-title', `focus is on ${await focusedId(page)}, not the view's title`);
  t.check(await page.getAttribute('#nav-incident', 'aria-current') === 'page', 'the nav entry is not current');
  t.result.notBeforeShown = await page.getAttribute('#nb-current', 'data-value');
  return page;
}

// Counts the sessions of a network; returns the count the page shows.
async function preview(t, page, network) {
  await page.selectOption('#tr-kind', 'network');
  await page.fill('#tr-value', network);
  await page.click('#tr-find');
  await page.waitForFunction(() => !document.getElementById('tr-preview').hidden ||
    document.getElementById('tr-error').textContent !== '');
  t.check(await page.textContent('#tr-error') === '', `the preview failed: ${await page.textContent('#tr-error')}`);
  return Number(await page.getAttribute('#tr-count', 'data-value'));
}

// Clicks button, confirms in the dialog, waits for the action's outcome
// (#<prefix>-result's count, or #<prefix>-error) and returns the count.
async function confirmed(t, page, button, prefix) {
  await page.click(button);
  await page.waitForSelector('#confirm[open]');
  await page.click('#confirm-ok');
  await page.waitForFunction((p) => document.getElementById(`${p}-result`).dataset.value !== undefined ||
    document.getElementById(`${p}-error`).textContent !== '', prefix);
  const error = await page.textContent(`#${prefix}-error`);
  t.check(error === '', `the action failed: ${error}`);
  return Number(await page.getAttribute(`#${prefix}-result`, 'data-value'));
}

async function cancel(t) {
  const page = await openIncident(t);
  const { network, badNetwork } = t.cfg.incident;

  t.setStep('a bad network: the server says why');
  t.expectedErrors.add('400 POST /admin/revoke');
  await page.fill('#tr-value', badNetwork);
  await page.click('#tr-find');
  await page.waitForFunction(() => document.getElementById('tr-error').textContent !== '');
  t.result.badNetworkError = await page.textContent('#tr-error');
  t.check(await page.isHidden('#tr-preview'), 'a preview is shown for a refused network');

  t.setStep('preview');
  t.result.previewCount = await preview(t, page, network);
  t.result.previewText = await page.textContent('#tr-count');
  await t.shot(page, 'incident-01-preview');

  t.setStep('triage: Cancel');
  await page.click('#tr-revoke');
  await page.waitForSelector('#confirm[open]');
  t.check(await focusedId(page) === 'confirm-cancel', 'the dialog did not take focus');
  t.result.triageDialog = await dialogText(page);
  await t.shot(page, 'incident-02-confirm-triage');
  await page.click('#confirm-cancel');
  await page.waitForFunction(() => !document.getElementById('confirm').open);
  t.check(await focusedId(page) === 'tr-revoke', `focus did not return to the button (${await focusedId(page)})`);
  t.check(await page.textContent('#tr-result') === '', 'a result is shown after Cancel');

  t.setStep('sign everyone out: Cancel');
  await page.click('#nb-submit');
  await page.waitForSelector('#confirm[open]');
  t.result.signOutDialog = await dialogText(page);
  await t.shot(page, 'incident-03-confirm-sign-out');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.getElementById('confirm').open);
  t.check(await focusedId(page) === 'nb-submit', `focus did not return to the button (${await focusedId(page)})`);
  t.check(await page.textContent('#nb-result') === '', 'a result is shown after Cancel');

  t.setStep('a future time: the server refuses it');
  t.expectedErrors.add('400 POST /admin/not-before');
  await page.check('#nb-chosen');
  t.check(await page.isEnabled('#nb-at'), 'the time field stays disabled');
  await page.fill('#nb-at', '2099-01-01T00:00:00');
  await page.click('#nb-submit');
  await page.waitForSelector('#confirm[open]');
  await page.click('#confirm-ok');
  await page.waitForFunction(() => document.getElementById('nb-error').textContent !== '');
  t.result.futureError = await page.textContent('#nb-error');
  t.result.notBeforeAfterCancel = await page.getAttribute('#nb-current', 'data-value');
  await t.noHorizontalOverflow(page, 'incident at 1280px');
  await t.shot(page, 'incident-04-refused');

  t.setStep('phone width (375px)');
  await page.setViewportSize({ width: 375, height: 812 });
  await t.noHorizontalOverflow(page, 'incident at 375px');
  await t.shot(page, 'incident-04-phone');
  return page;
}

async function triage(t) {
  const page = await openIncident(t);
  t.setStep('preview');
  t.result.previewCount = await preview(t, page, t.cfg.incident.network);
  t.setStep('revoke, confirmed');
  t.result.revoked = await confirmed(t, page, '#tr-revoke', 'tr');
  t.result.revokedText = await page.textContent('#tr-result');
  t.check(await page.isHidden('#tr-preview'), 'the preview stays after the revocation');
  await t.shot(page, 'incident-05-revoked');
  return page;
}

async function signout(t) {
  const page = await openIncident(t);
  t.setStep('sign everyone out, confirmed');
  t.result.invalidated = await confirmed(t, page, '#nb-submit', 'nb');
  t.result.signOutText = await page.textContent('#nb-result');
  t.result.notBeforeShown = await page.getAttribute('#nb-current', 'data-value');
  await t.shot(page, 'incident-06-signed-out');
  return page;
}

export async function incident(t) {
  const phase = { cancel, triage, signout }[t.cfg.incident.phase];
  t.check(phase, `unknown phase ${t.cfg.incident.phase}`);
  const page = await phase(t);
  t.result.cspViolations = await page.evaluate(() => window.__csp);
}

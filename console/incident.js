// incident.js - the Incident view (#/incident), issue 19 item 6: the
// global not-before ("sign everyone out", POST /admin/not-before) and
// triage by client network or device (POST /admin/revoke), which first
// counts the matches with the API's dryRun and then revokes them. Both
// actions go through the confirmation dialog and say what they will do;
// the server audits each with its count.

import { call } from './api.js';
import { confirmDialog } from './confirm.js';
import { $, setValue } from './dom.js';
import * as fmt from './format.js';

const KINDS = {
  network: {
    label: 'Client network',
    hint: 'An IPv4 or IPv6 network such as 203.0.113.0/24 or 2001:db8::/32; a bare address is one host.',
    missing: 'Enter a network in CIDR notation.',
    what: (v) => `from the network ${v}`,
  },
  deviceId: {
    label: 'Device id',
    hint: 'The deviceId the application gave when it created the sessions, matched exactly.',
    missing: 'Enter a device id.',
    what: (v) => `on the device ${v}`,
  },
};

const sessions = (n) => `${fmt.count(n)} session${n === 1 ? '' : 's'}`;

function say(prefix, result, error) {
  setValue(`${prefix}-result`, result || '');
  $(`${prefix}-error`).textContent = error || '';
}

// ---- the global not-before -------------------------------------------------

let nbSeq = 0;

function showNotBefore(iso) {
  if (iso) setValue('nb-current', `${fmt.absolute(iso)} (${fmt.relative(iso)})`, iso);
  else setValue('nb-current', 'none: every unexpired session validates', 'none');
}

async function loadNotBefore() {
  const seq = ++nbSeq;
  setValue('nb-current', 'reading…');
  try {
    const r = await call('GET', 'admin/not-before');
    if (seq === nbSeq) showNotBefore(r.notBefore);
  } catch (e) {
    if (seq !== nbSeq || e.status === 401) return;
    setValue('nb-current', 'unknown');
    say('nb', '', `Could not read the not-before: ${e.message}`);
  }
}

// The browser's local time as a datetime-local value, to the second.
function localNow() {
  const d = new Date();
  d.setMilliseconds(0);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

for (const radio of [$('nb-now'), $('nb-chosen')]) {
  radio.addEventListener('change', () => {
    const chosen = $('nb-chosen').checked;
    $('nb-at').disabled = !chosen;
    if (chosen && !$('nb-at').value) $('nb-at').value = localNow();
  });
}

$('nb-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  say('nb');
  let notBefore = 'now';
  let when = 'this moment';
  if ($('nb-chosen').checked) {
    const t = new Date($('nb-at').value); // datetime-local: this browser's time zone
    if (!$('nb-at').value || Number.isNaN(t.getTime())) {
      say('nb', '', 'Enter the time, or choose "now".');
      $('nb-at').focus();
      return;
    }
    notBefore = t.toISOString();
    when = fmt.absolute(notBefore);
  }
  const button = $('nb-submit');
  const ok = await confirmDialog({
    title: 'Sign everyone out?',
    text: `Every session created before ${when} stops validating at once, on every replica and ` +
      'whoever its user is: all those users must sign in again. Sessions created afterwards keep ' +
      'working. This cannot be undone: the time can only be moved later.',
    ok: 'Sign everyone out',
    opener: button,
    fallback: $('incident-title'),
  });
  if (!ok) return;
  button.disabled = true;
  try {
    const r = await call('POST', 'admin/not-before', { json: { notBefore } });
    showNotBefore(r.notBefore);
    const kept = notBefore !== 'now' && Date.parse(r.notBefore) > Date.parse(notBefore)
      ? ' A later not-before was already in force and stays.' : '';
    say('nb', `Done: ${sessions(r.sessionsInvalidated)} created before ${fmt.absolute(r.notBefore)} ` +
      `no longer validate.${kept} The server audited it as not_before_set.`);
    $('nb-result').dataset.value = String(r.sessionsInvalidated);
  } catch (e) {
    if (e.status !== 401) say('nb', '', `Could not sign everyone out: ${e.message}`);
  } finally {
    button.disabled = false;
  }
  button.focus();
});

// ---- triage ------------------------------------------------------------------

let preview = null; // {kind, value, matching}: what the revoke button ends
let trSeq = 0;

function resetPreview() {
  preview = null;
  trSeq++; // a count still on its way is for another input
  $('tr-preview').hidden = true;
  setValue('tr-count', '');
}

$('tr-kind').addEventListener('change', () => {
  const k = KINDS[$('tr-kind').value];
  $('tr-value-label').textContent = k.label;
  $('tr-hint').textContent = k.hint;
  resetPreview();
  say('tr');
});
$('tr-value').addEventListener('input', resetPreview);

$('tr-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  resetPreview();
  say('tr');
  const kind = $('tr-kind').value;
  const value = $('tr-value').value.trim();
  if (!value) {
    say('tr', '', KINDS[kind].missing);
    $('tr-value').focus();
    return;
  }
  const seq = trSeq;
  const button = $('tr-find');
  button.disabled = true;
  try {
    const r = await call('POST', 'admin/revoke', { json: { [kind]: value, dryRun: true } });
    if (seq !== trSeq) return;
    preview = { kind, value, matching: r.matching };
    const what = KINDS[kind].what(value);
    setValue('tr-count', r.matching === 0 ? `No active session ${what}.`
      : `${fmt.count(r.matching)} active ${r.matching === 1 ? 'session' : 'sessions'} ${what}.`, r.matching);
    $('tr-revoke').disabled = r.matching === 0;
    $('tr-preview').hidden = false;
  } catch (e) {
    if (seq === trSeq && e.status !== 401) say('tr', '', `Could not count the sessions: ${e.message}`);
  } finally {
    button.disabled = false;
  }
});

$('tr-revoke').addEventListener('click', async () => {
  const p = preview;
  if (!p) return;
  const what = KINDS[p.kind].what(p.value);
  const ok = await confirmDialog({
    title: `Revoke ${sessions(p.matching)}?`,
    text: `Every active session ${what} ends at once, on every replica, whoever its user is ` +
      `(${fmt.count(p.matching)} at the last count). Their tokens stop working and those users must ` +
      'sign in again. This cannot be undone.',
    ok: 'Revoke sessions',
    opener: $('tr-revoke'),
    fallback: $('incident-title'),
  });
  if (!ok || preview !== p) return;
  $('tr-revoke').disabled = true;
  try {
    const r = await call('POST', 'admin/revoke', { json: { [p.kind]: p.value } });
    resetPreview();
    say('tr', `Revoked ${sessions(r.revoked)} ${what}. The server audited it as incident_revoked ` +
      'with this count.');
    $('tr-result').dataset.value = String(r.revoked);
  } catch (e) {
    $('tr-revoke').disabled = false;
    if (e.status !== 401) say('tr', '', `Could not revoke: ${e.message}`);
  }
  $('tr-value').focus();
});

// ---- the view ------------------------------------------------------------------

// Shows the view fresh: the not-before read again, no earlier result.
export function showIncident() {
  resetPreview();
  say('nb');
  say('tr');
  loadNotBefore();
}

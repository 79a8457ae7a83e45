// confirm.js - the console's one confirmation dialog (#confirm in
// index.html), for every action that ends sessions.

import { $ } from './dom.js';

// Asks; resolves true when the operator confirmed. Focus goes back to
// opener (or to fallback when the opener is gone from the page).
export function confirmDialog({ title, text, ok, opener, fallback }) {
  const dlg = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = ok;
  return new Promise((resolve) => {
    let answer = false;
    const okClick = () => {
      answer = true;
      dlg.close();
    };
    const cancelClick = () => dlg.close();
    const closed = () => {
      $('confirm-ok').removeEventListener('click', okClick);
      $('confirm-cancel').removeEventListener('click', cancelClick);
      dlg.removeEventListener('close', closed);
      resolve(answer);
    };
    $('confirm-ok').addEventListener('click', okClick);
    $('confirm-cancel').addEventListener('click', cancelClick);
    dlg.addEventListener('close', closed);
    dlg.showModal();
    $('confirm-cancel').focus();
  }).then((answer) => {
    const target = opener && opener.isConnected ? opener : fallback;
    if (target && !answer) target.focus();
    return answer;
  });
}

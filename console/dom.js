// dom.js - element helpers. Text always goes in as text nodes (never HTML),
// so nothing a client stored in a session can become markup.

export const $ = (id) => document.getElementById(id);

// h('td', {class: 'x', 'data-label': 'Device'}, 'text', childNode, ...)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'onclick') el.addEventListener('click', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

// Sets the text of element id and, for tests and tools, its raw value.
export function setValue(id, text, raw) {
  const el = $(id);
  el.textContent = text;
  if (raw === undefined || raw === null || Number.isNaN(raw)) el.removeAttribute('data-value');
  else el.dataset.value = String(raw);
}

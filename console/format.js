// format.js - numbers, durations and times as people read them.

const UNITS = [
  [60, 's', 1],
  [3600, 'min', 60],
  [86400, 'h', 3600],
  [Infinity, 'd', 86400],
];

// "3 min ago", "just now", "in 55 min" for an ISO time relative to now (ms).
export function relative(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '–';
  const diff = (t - now) / 1000;
  const abs = Math.abs(diff);
  if (abs < 10) return diff <= 0 ? 'just now' : 'in a few seconds';
  const [, unit, size] = UNITS.find(([limit]) => abs < limit);
  const n = Math.floor(abs / size);
  return diff < 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
}

// "2026-11-28 14:05:01" in the browser's time zone.
export function absolute(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '–';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// Seconds as "0.42 ms", "12.5 ms", "1.20 s".
export function latency(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return '–';
  const ms = sec * 1000;
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms < 100 ? ms.toFixed(1) : ms.toFixed(0)} ms`;
  return `${sec.toFixed(2)} s`;
}

export function percent(fraction) {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return '–';
  const p = fraction * 100;
  return `${p === 0 ? '0' : p < 0.1 ? p.toFixed(3) : p.toFixed(1)} %`;
}

export function count(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return Math.round(n).toLocaleString('en-US');
}

export function rate(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return n < 10 ? n.toFixed(2) : n.toFixed(1);
}

// A geoLocation in one line: the API takes a string ("Paris, FR", shown as
// given) or an object ({"country": "FR", "city": "Paris"}, or anything a
// client sent).
export function location(geo) {
  if (typeof geo === 'string') return geo.trim();
  if (!geo || typeof geo !== 'object') return '';
  const parts = ['city', 'region', 'country']
    .map((k) => geo[k])
    .filter((v) => typeof v === 'string' && v);
  if (parts.length) return parts.join(', ');
  return Object.entries(geo)
    .filter(([, v]) => typeof v === 'string' || typeof v === 'number')
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
}

// metrics.js - reads the Prometheus text exposition format (0.0.4) that
// GET /metrics serves, and derives the overview's numbers from it. Pure
// functions: no DOM, no fetch.

// "+Inf", "-Inf", "NaN" and plain numbers.
function number(text) {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

// The label set of `{a="x",b="y\"z"}` (without the braces) as an object.
function parseLabels(s) {
  const labels = {};
  let i = 0;
  while (i < s.length) {
    while (s[i] === ' ' || s[i] === ',') i++;
    if (i >= s.length) break;
    const eq = s.indexOf('=', i);
    if (eq < 0 || s[eq + 1] !== '"') throw new Error(`bad label set: ${s}`);
    const name = s.slice(i, eq).trim();
    let value = '';
    let j = eq + 2;
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\' && j + 1 < s.length) {
        j++;
        value += s[j] === 'n' ? '\n' : s[j];
      } else {
        value += s[j];
      }
    }
    if (j >= s.length) throw new Error(`unterminated label value: ${s}`);
    labels[name] = value;
    i = j + 1;
  }
  return labels;
}

// Samples: [{name, labels, value}], comments and blank lines skipped.
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    let name;
    let labels = {};
    let rest;
    const brace = line.indexOf('{');
    const space = line.search(/\s/);
    if (brace >= 0 && (space < 0 || brace < space)) {
      const close = line.lastIndexOf('}');
      if (close < brace) throw new Error(`bad sample line: ${line}`);
      name = line.slice(0, brace);
      labels = parseLabels(line.slice(brace + 1, close));
      rest = line.slice(close + 1).trim();
    } else {
      name = line.slice(0, space);
      rest = line.slice(space).trim();
    }
    const value = number(rest.split(/\s+/)[0]);
    samples.push({ name, labels, value });
  }
  return samples;
}

// The sum of the samples called name whose labels pass keep.
export function total(samples, name, keep = () => true) {
  let sum = 0;
  for (const s of samples) if (s.name === name && keep(s.labels)) sum += s.value;
  return sum;
}

// A histogram's cumulative buckets, summed over every series whose labels
// pass keep: [{le, count}] sorted by le (the last one is +Inf).
export function buckets(samples, name, keep = () => true) {
  const byLe = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !keep(s.labels)) continue;
    const le = number(s.labels.le);
    byLe.set(le, (byLe.get(le) || 0) + s.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, c]) => ({ le, count: c }));
}

// Bucket counts of a minus those of b (an interval between two scrapes).
export function bucketDelta(a, b) {
  if (!b) return a;
  const before = new Map(b.map((x) => [x.le, x.count]));
  return a.map((x) => ({ le: x.le, count: Math.max(0, x.count - (before.get(x.le) || 0)) }));
}

// The q-quantile (0..1) of cumulative buckets, as Prometheus'
// histogram_quantile computes it: linear interpolation inside the bucket
// where the rank falls (from 0 for the first bucket); a rank in the +Inf
// bucket gives the highest finite bound. null when there are no
// observations.
export function quantile(q, bs) {
  if (!bs.length) return null;
  const n = bs[bs.length - 1].count;
  if (!(n > 0)) return null;
  const rank = q * n;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of bs) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prevLe;
      if (b.count === prevCount) return b.le;
      return prevLe + (b.le - prevLe) * ((rank - prevCount) / (b.count - prevCount));
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

// The routes whose latency is "validation latency".
export const VALIDATION_ROUTES = new Set([
  '/sessions/validate',
  '/sessions/{sessionId}/validate',
  '/auth',
  '/introspect',
]);

// Everything the overview shows, from one scrape.
export function summarize(text) {
  const s = parsePrometheus(text);
  const status = (l) => Number(l.status);
  const valBuckets = buckets(s, 'sessiond_http_request_duration_seconds',
    (l) => VALIDATION_ROUTES.has(l.route));
  const requests = total(s, 'sessiond_http_requests_total');
  const errors5xx = total(s, 'sessiond_http_requests_total', (l) => status(l) >= 500);
  const errors4xx = total(s, 'sessiond_http_requests_total', (l) => status(l) >= 400 && status(l) < 500);
  const validations = valBuckets.length ? valBuckets[valBuckets.length - 1].count : 0;
  const commits = total(s, 'sessiond_store_commits_total');
  const writes = total(s, 'sessiond_store_writes_total');
  return {
    active: total(s, 'sessiond_sessions_active'),
    requests,
    errors5xx,
    errors4xx,
    errorRate: requests > 0 ? errors5xx / requests : null,
    clientErrorRate: requests > 0 ? errors4xx / requests : null,
    validations,
    validationBuckets: valBuckets,
    p50: quantile(0.5, valBuckets),
    p95: quantile(0.95, valBuckets),
    p99: quantile(0.99, valBuckets),
    storeBroken: total(s, 'sessiond_store_broken'),
    writesPerCommit: commits > 0 ? writes / commits : null,
    expired: total(s, 'sessiond_sessions_expired_total'),
    auditRecords: total(s, 'sessiond_audit_records_total'),
    auditDropped: total(s, 'sessiond_audit_dropped_total'),
  };
}

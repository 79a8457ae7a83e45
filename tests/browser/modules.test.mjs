// modules.test.mjs - node's test runner on the console's pure modules
// (metrics parsing and quantiles, user-agent names, formats). Run by
// tests/e2e/test_console.py: node --test tests/browser/
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

// console/ has no package.json, so its .js files are loaded as ES modules
// from their source text.
async function load(name) {
  const src = readFileSync(new URL(`../../console/${name}`, import.meta.url), 'utf8');
  return import(`data:text/javascript;base64,${Buffer.from(src).toString('base64')}`);
}

const metrics = await load('metrics.js');
const { describeUserAgent } = await load('ua.js');
const fmt = await load('format.js');

const SAMPLE = `# HELP sessiond_http_requests_total Requests.
# TYPE sessiond_http_requests_total counter
sessiond_http_requests_total{route="/sessions/validate",status="200"} 90
sessiond_http_requests_total{route="/sessions",status="503"} 5
sessiond_http_requests_total{route="/sessions",status="404"} 5
sessiond_http_request_duration_seconds_bucket{route="/sessions/validate",le="0.001"} 50
sessiond_http_request_duration_seconds_bucket{route="/sessions/validate",le="0.01"} 90
sessiond_http_request_duration_seconds_bucket{route="/sessions/validate",le="+Inf"} 90
sessiond_http_request_duration_seconds_bucket{route="/auth",le="0.001"} 0
sessiond_http_request_duration_seconds_bucket{route="/auth",le="0.01"} 0
sessiond_http_request_duration_seconds_bucket{route="/auth",le="+Inf"} 10
sessiond_http_request_duration_seconds_bucket{route="/sessions",le="0.001"} 0
sessiond_http_request_duration_seconds_bucket{route="/sessions",le="0.01"} 0
sessiond_http_request_duration_seconds_bucket{route="/sessions",le="+Inf"} 10
sessiond_sessions_active 7
sessiond_store_broken 0
weird_metric{a="x\\"y}",b="line\\nbreak"} 1.5e3
`;

test('parses samples, escaped label values included', () => {
  const s = metrics.parsePrometheus(SAMPLE);
  const weird = s.find((x) => x.name === 'weird_metric');
  assert.deepEqual(weird.labels, { a: 'x"y}', b: 'line\nbreak' });
  assert.equal(weird.value, 1500);
  assert.equal(s.find((x) => x.labels.le === '+Inf').value, 90);
});

test('summarizes requests, errors and validation latency', () => {
  const o = metrics.summarize(SAMPLE);
  assert.equal(o.active, 7);
  assert.equal(o.requests, 100);
  assert.equal(o.errorRate, 0.05);
  assert.equal(o.clientErrorRate, 0.05);
  assert.equal(o.validations, 100); // /sessions/validate + /auth, not /sessions
  // rank 50 of 100: the top of the first bucket
  assert.equal(o.p50, 0.001);
  // rank 80: 30 of 40 into (0.001, 0.01]
  assert.ok(Math.abs(metrics.quantile(0.8, o.validationBuckets) - (0.001 + 0.009 * 0.75)) < 1e-12);
  // rank 95 falls in +Inf: the highest finite bound
  assert.equal(o.p95, 0.01);
});

test('series split by method (one route, several methods) are all counted', () => {
  // /metrics labels the HTTP series by method too: GET, PUT and DELETE of
  // one route are separate series, and the overview sums them.
  const text = `sessiond_http_requests_total{method="GET",route="/sessions/{sessionId}",status="200"} 6
sessiond_http_requests_total{method="PUT",route="/sessions/{sessionId}",status="200"} 3
sessiond_http_requests_total{method="DELETE",route="/sessions/{sessionId}",status="503"} 1
sessiond_http_requests_total{method="other",route="unmatched",status="404"} 2
sessiond_http_request_duration_seconds_bucket{method="GET",route="/sessions/{sessionId}/validate",le="0.001"} 4
sessiond_http_request_duration_seconds_bucket{method="GET",route="/sessions/{sessionId}/validate",le="+Inf"} 4
sessiond_http_request_duration_seconds_bucket{method="POST",route="/sessions/validate",le="0.001"} 2
sessiond_http_request_duration_seconds_bucket{method="POST",route="/sessions/validate",le="+Inf"} 6
sessiond_http_request_duration_seconds_bucket{method="PUT",route="/sessions/{sessionId}",le="+Inf"} 3
`;
  const o = metrics.summarize(text);
  assert.equal(o.requests, 12);
  assert.equal(o.errors5xx, 1);
  assert.equal(o.errors4xx, 2);
  assert.equal(o.validations, 10); // both validation routes, not the PUT
  assert.deepEqual(o.validationBuckets, [{ le: 0.001, count: 6 }, { le: Infinity, count: 10 }]);
});

test('quantiles of empty histograms and interval deltas', () => {
  assert.equal(metrics.quantile(0.5, []), null);
  assert.equal(metrics.quantile(0.5, [{ le: 0.1, count: 0 }, { le: Infinity, count: 0 }]), null);
  const a = [{ le: 0.1, count: 10 }, { le: Infinity, count: 12 }];
  const b = [{ le: 0.1, count: 4 }, { le: Infinity, count: 4 }];
  assert.deepEqual(metrics.bucketDelta(a, b), [{ le: 0.1, count: 6 }, { le: Infinity, count: 8 }]);
});

test('user agents in readable form', () => {
  const cases = {
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0': 'Firefox 120 on Windows',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1': 'Safari 17 on iPhone',
    'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36': 'Chrome 119 on Android 14',
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61': 'Edge 120 on macOS',
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/105.0.0.0': 'Opera 105 on Linux',
    'curl/8.4.0': 'curl 8.4',
    'python-requests/2.31.0': 'Python requests 2.31',
    '': '',
  };
  for (const [ua, want] of Object.entries(cases)) assert.equal(describeUserAgent(ua), want, ua);
  const long = describeUserAgent(`X${'🙂'.repeat(100)}`);
  assert.equal(Array.from(long).length, 40); // clipped by code points, ellipsis included
  assert.ok(!/[\uD800-\uDBFF]$/.test(long.slice(0, -1)), 'a surrogate pair was cut');
});

test('relative times and other formats', () => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  assert.equal(fmt.relative('2026-01-01T11:57:00Z', now), '3 min ago');
  assert.equal(fmt.relative('2026-01-01T11:59:55Z', now), 'just now');
  assert.equal(fmt.relative('2026-01-01T12:55:00Z', now), 'in 55 min');
  assert.equal(fmt.relative('2025-12-30T12:00:00Z', now), '2 d ago');
  assert.equal(fmt.relative('nonsense', now), '–');
  assert.equal(fmt.latency(0.00042), '0.42 ms');
  assert.equal(fmt.latency(null), '–');
  assert.equal(fmt.percent(0.05), '5.0 %');
  assert.equal(fmt.location({ country: 'FR', city: 'Paris' }), 'Paris, FR');
  assert.equal(fmt.location({ lat: 1.5 }), 'lat: 1.5');
});

test('a geoLocation given as a string is shown as given', () => {
  // docs/openapi.yaml's own example of GeoLocation is the string "Paris, FR".
  assert.equal(fmt.location('Paris, FR'), 'Paris, FR');
  assert.equal(fmt.location(' Paris '), 'Paris');
  assert.equal(fmt.location({ lat: 48.8566, lon: 2.3522, accuracyMeters: 50 }),
    'lat: 48.8566, lon: 2.3522, accuracyMeters: 50');
  assert.equal(fmt.location(null), '');
  assert.equal(fmt.location(undefined), '');
  assert.equal(fmt.location(42), '');
});

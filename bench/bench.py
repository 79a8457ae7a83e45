#!/usr/bin/env python3
"""sessiond benchmark harness (make bench). Starts every target on loopback,
drives it with wrk, and prints one table: throughput, p50/p99/p99.9, server
CPU and peak RSS, with ratios against baselines measured in the same run.
Runs alternate between targets and repeat (--reps); the table shows medians
and the min-max spread.

  bench/bench.py [--reps 3] [--duration 5] [--sizes 10000,100000,1000000,10000000]
                 [--idle 10000] [--no-scaleout] [--quick]
                 [--only minting,jwt-verify] [--sessiond PATH]

--only runs just the named groups of rows (on a store of --population
sessions) and prints their lines, for measuring one change without the
whole 12-minute run; --sessiond measures another binary (e.g. a build of
an earlier commit, for before/after runs alternated by hand).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import harness
from harness import (BENCH, PROCS, ROOT, TMP, free_port, loaded_sessiond, peak_rss_kb, populate, start,
                     SESSIOND, start_sessiond, status_kb, stop, wrk)
from idle_conns import idle_connections, raise_nofile  # also make idle-conns on its own
from write_compare import measure as write_targets  # also make write-compare on its own
JSON_BODY = '{"isValid":true,"expiry":"2026-11-28T05:23:53.585Z","sessionId":"EBDIWiJAahK2fvOtPXXRDw","userId":"user-1234"}'


class Results:
    def __init__(self):
        self.rows = {}

    def add(self, name, r):
        self.rows.setdefault(name, []).append(r)

    def med(self, name, key):
        return statistics.median(x[key] for x in self.rows[name])

    def line(self, name, base=None, note=""):
        rs = self.rows[name]
        rps = [x["rps"] for x in rs]
        ratio = f"{self.med(name, 'rps') / self.med(base, 'rps'):.2f}x {base}" if base else ""
        return (f"| {name} | {statistics.median(rps):,.0f} | {min(rps):,.0f}–{max(rps):,.0f} | "
                f"{self.med(name, 'p50_us') / 1000:.2f} | {self.med(name, 'p99_us') / 1000:.2f} | "
                f"{self.med(name, 'p999_us') / 1000:.2f} | {self.med(name, 'cpu'):.0f}% | "
                f"{max(x['rss_mb'] for x in rs):.0f} | {sum(x['non2xx'] + x['errors'] for x in rs)} | "
                f"{ratio} {note}|")


def start_nginx():
    port = free_port()
    d = tempfile.mkdtemp(dir=TMP)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 2; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{ listen 127.0.0.1:{port}; default_type application/json;
    location / {{ return 200 '{JSON_BODY}'; }} }} }}
""")
    return start(["nginx", "-c", conf, "-p", d], port, "nginx.log"), port


def start_redis():
    port = free_port()
    d = tempfile.mkdtemp(dir=TMP)
    p = start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", d], port, "redis.log")
    return p, port


def redis_benchmark(port):
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-n", "300000", "-c", "64",
                          "--csv"], capture_output=True, text=True).stdout
    m = re.search(r'"GET","([\d.]+)"', out)
    return float(m.group(1)) if m else 0.0


def peer_available():
    return os.path.exists(os.path.join(BENCH, "peer", "server.js"))


def start_peer(redis_port, n, cookies):
    peer = os.path.join(BENCH, "peer")
    if not os.path.isdir(os.path.join(peer, "node_modules")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=peer, check=True)
    url = f"redis://127.0.0.1:{redis_port}"
    subprocess.run(["node", os.path.join(peer, "populate.js"), url, str(n), cookies], check=True)
    port = free_port()
    env = dict(os.environ, PORT=str(port), REDIS_URL=url)
    return start(["node", os.path.join(peer, "server.js")], port, "peer.log", env=env), port


def tls_cert():
    """A throwaway P-256 certificate for localhost (the TLS row)."""
    d = tempfile.mkdtemp(dir=TMP)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def tls_rows(a, R, data_dir, tokens):
    """Validation over TLS against the same over plain HTTP, side by side on
    one store (issue 14: TLS at least 0.75x): the store of the main runs,
    served once with --tls-cert, once without, alternating."""
    cert, key = tls_cert()
    for _ in range(a.reps):
        for name, extra, scheme in (("validate token (plain, same store)", [], "http"),
                                    ("validate token over TLS", ["--tls-cert", cert, "--tls-key", key],
                                     "https")):
            sd, port = start_sessiond(extra, data_dir)
            try:
                R.add(name, wrk(port, "validate_token.lua", [tokens], a.duration, proc=sd, scheme=scheme))
            finally:
                stop(sd)


def reuse_counts(port):
    """The server's sessiond_jwt_reuse_total by result ({} without the cache)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r'^sessiond_jwt_reuse_total\{result="(\w+)"\} (\d+)$', text, re.M)}


MINTING_PAIRS = (("", []), (", --jwt-reuse 0", ["--jwt-reuse", "0"]))


def minting_rows(a, R, data_dir, tokens, notes):
    """Validation that also mints an access token (?accessToken=true, an
    Ed25519 key) against plain validation, on one server with --jwt-keys
    and the store of the main runs, alternating (issue 18: minting costs at
    most 1.5x a plain validation, so the ratio should be at least 0.67x).
    Twice: with the server's default --jwt-reuse (a session's token handed
    out again while most of its lifetime remains), after a warm-up run of
    twice the duration that is not counted (the steady state of a gateway
    whose sessions each ask every second or two; the notes give each rep's
    share of asks answered from the cache), and with --jwt-reuse 0 (every
    ask signs: a cold cache, or sessions asked for a token once)."""
    keys = os.path.join(data_dir, "jwt-keys")
    with open(keys, "w") as f:
        f.write(subprocess.run([harness.SESSIOND, "jwk", "generate"], check=True, capture_output=True,
                               text=True).stdout)
    os.chmod(keys, 0o600)
    help_text = subprocess.run([harness.SESSIOND, "--help"], capture_output=True, text=True).stdout
    for sfx, extra in MINTING_PAIRS:
        if extra and "--jwt-reuse" not in help_text:
            continue  # a binary from before --jwt-reuse: every ask signs already
        sd, port = start_sessiond(["--jwt-keys", keys] + extra, data_dir)
        shares = []
        try:
            if not extra:
                wrk(port, "validate_token_jwt.lua", [tokens], 2 * a.duration, proc=sd)
            for _ in range(a.reps):
                R.add(f"validate token (plain, keys loaded{sfx})",
                      wrk(port, "validate_token.lua", [tokens], a.duration, proc=sd))
                c0 = reuse_counts(port)
                R.add(f"validate token + access token (EdDSA{sfx})",
                      wrk(port, "validate_token_jwt.lua", [tokens], a.duration, proc=sd))
                c1 = reuse_counts(port)
                asks = sum(c1.values()) - sum(c0.values())
                if asks:
                    shares.append(f"{(c1['hit'] - c0['hit']) / asks:.0%}")
        finally:
            stop(sd)
        plain, minted = (f"validate token (plain, keys loaded{sfx})",
                         f"validate token + access token (EdDSA{sfx})")
        cp, cm = (statistics.median(x["cpu"] / 100 / x["rps"] * 1e6 for x in R.rows[n]) for n in (plain, minted))
        label = sfx or (" (--jwt-reuse default)" if "--jwt-reuse" in help_text else " (a binary without --jwt-reuse)")
        notes.append(f"server CPU per request{label}: plain validation {cp:.1f} us, "
                     f"with an access token {cm:.1f} us ({cm / cp:.2f}x; medians of the reps)")
        if shares:
            notes.append(f"access tokens handed out again (--jwt-reuse, default) in each rep of the "
                         f"minting row, after a {2 * a.duration} s warm-up: {', '.join(shares)} of the asks")


def minting_lines(R):
    out = []
    for sfx, _ in MINTING_PAIRS:
        plain = f"validate token (plain, keys loaded{sfx})"
        if plain in R.rows:
            base = "nginx return 200" if "nginx return 200" in R.rows and not sfx else None
            out.append(R.line(plain, base))
            out.append(R.line(f"validate token + access token (EdDSA{sfx})", plain,
                              "(target: at least 0.67x, i.e. at most 1.5x the cost)"))
    return out


def jwt_verify_rows(seconds):
    """Offline verification by libsessiond-client, one thread, no server
    (build/jwt_verify_bench; issue 18's target: 20k/s per core): per
    algorithm, signed and encrypted, cold (every token new: a signature
    check each, beside OpenSSL's bare signature check on the same key, the
    floor without a cache) and warm (tokens the verifier has verified
    before: its cache of verified tokens answers, exp/nbf and the
    revocation feed still checked on each call)."""
    exe = os.path.join(ROOT, "build", "jwt_verify_bench")
    out = subprocess.run([exe, "--seconds", str(seconds), "--jwe"], check=True, capture_output=True,
                         text=True, timeout=900).stdout
    rows = [json.loads(line.split(" ", 1)[1]) for line in out.splitlines() if line.startswith("JWTVERIFY ")]
    lines = ["| client JWT verification (1 thread, CPU time) | tokens | verifications/s | us each | "
             "cache hits / misses | OpenSSL signature check alone /s | target |\n|---|---|---|---|---|---|---|"]
    for r in rows:
        floor = f"{r['openssl_per_s']:,.0f}" if "openssl_per_s" in r else "-"
        target = "-" if "JWE" in r["alg"] else "20,000"  # the target is for signed tokens
        mode = {"cold": "every one new", "warm": "seen before"}.get(r.get("mode"), "-")
        lines.append(f"| {r['alg']} | {mode} | {r['per_s']:,.0f} | {r['us']:.1f} | "
                     f"{r.get('hits', 0):,} / {r.get('misses', 0):,} | {floor} | {target} |")
    return lines


def only(a, groups):
    """The groups of rows named by --only, printed (latest.md is left alone)."""
    unknown = groups - {"minting", "jwt-verify"}
    if unknown:
        raise SystemExit(f"--only: unknown groups {sorted(unknown)} (minting, jwt-verify)")
    R, lines, notes = Results(), [], []
    if "minting" in groups:
        data_dir = tempfile.mkdtemp(dir=TMP)
        sd, port = start_sessiond(data_dir=data_dir)
        tokens = os.path.join(TMP, "tokens.txt")
        populate(port, a.population, tokens)
        stop(sd)
        minting_rows(a, R, data_dir, tokens, notes)
        lines.append("| scenario | req/s (median) | spread | p50 ms | p99 ms | p99.9 ms | server CPU | "
                     "peak RSS MB | errors+non-2xx | ratio |\n|---|---|---|---|---|---|---|---|---|---|")
        lines.extend(minting_lines(R))
    if "jwt-verify" in groups:
        lines.append("")
        lines.extend(jwt_verify_rows(max(1, min(a.duration, 5))))
    print(f"# {harness.SESSIOND}, population {a.population:,}, {a.reps} reps of {a.duration} s")
    print("\n".join(lines + [""] + [f"- {n}" for n in notes]))


def scaleout(a, R, notes):
    """The scale-out mode: one sessiond on a private PostgreSQL 15 with a
    private Redis cache (validation through Redis, creates through
    PostgreSQL), and the same without the cache."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
    import pgserver
    try:
        pg = pgserver.PgServer()
    except RuntimeError as e:
        notes.append(f"scale-out mode not measured: {e}")
        return
    redis, redis_port = start_redis()
    try:
        for i, (name, extra) in enumerate((("PG+Redis", ["--cache", f"redis://127.0.0.1:{redis_port}"]),
                                           ("PG", []))):
            pg.psql(f"CREATE DATABASE bench{i}")
            sd, port = start_sessiond(["--store", pg.url(f"bench{i}")] + extra)
            tokens = os.path.join(TMP, f"tokens-pg{i}.txt")
            secs = populate(port, a.pg_population, tokens)
            notes.append(f"scale-out ({name}): {a.pg_population:,} sessions created in {secs:.1f} s")
            for _ in range(a.reps):
                R.add(f"{name}: validate token", wrk(port, "validate_token.lua", [tokens], a.duration, proc=sd))
                R.add(f"{name}: create", wrk(port, "create.lua", [], a.duration, proc=sd))
            stop(sd)
    finally:
        stop(redis)
        pg.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--population", type=int, default=100000)
    ap.add_argument("--sizes", default="10000,100000,1000000,10000000")
    ap.add_argument("--idle", type=int, default=10000, help="idle keep-alive connections to measure")
    ap.add_argument("--pg-population", type=int, default=50000)
    ap.add_argument("--no-scaleout", action="store_true", help="skip PostgreSQL and Redis")
    ap.add_argument("--quick", action="store_true", help="1 rep, 3 s runs, small sizes")
    ap.add_argument("--out", default=os.path.join(BENCH, "results", "latest.md"))
    ap.add_argument("--only", default="", help="comma-separated groups to run alone: minting, jwt-verify")
    ap.add_argument("--sessiond", default="", help="the sessiond binary to measure (default build/sessiond)")
    a = ap.parse_args()
    if a.sessiond:
        harness.SESSIOND = os.path.abspath(a.sessiond)
    if a.only:
        return only(a, set(a.only.split(",")))
    if a.quick:
        a.reps, a.duration, a.sizes, a.idle, a.pg_population = 1, 3, "10000,100000", 2000, 10000
    # 10k idle connections and their server need descriptors.
    a.idle = raise_nofile(a.idle)
    R = Results()
    notes = []

    nginx, nginx_port = start_nginx()
    main_dir = tempfile.mkdtemp(dir=TMP)
    sd, sd_port = start_sessiond(data_dir=main_dir)
    tokens = os.path.join(TMP, "tokens.txt")
    secs = populate(sd_port, a.population, tokens)
    notes.append(f"population: {a.population:,} sessions created through POST /sessions in {secs:.1f} s "
                 f"({a.population / secs:,.0f}/s from a Python asyncio client)")
    peer = redis = None
    if peer_available():
        redis, redis_port = start_redis()
        cookies = os.path.join(TMP, "cookies.txt")
        peer, peer_port = start_peer(redis_port, a.population, cookies)

    print(f"# running {a.reps} alternating reps of {a.duration}s per scenario (wrk -t2 -c64)", flush=True)
    for rep in range(a.reps):
        R.add("nginx return 200", wrk(nginx_port, "static.lua", duration=a.duration, proc=nginx))
        R.add("validate token", wrk(sd_port, "validate_token.lua", [tokens], a.duration, proc=sd))
        R.add("validate id", wrk(sd_port, "validate_id.lua", [tokens], a.duration, proc=sd))
        if peer:
            R.add("express-session validate", wrk(peer_port, "peer_validate.lua", [cookies],
                                                  a.duration, proc=peer))
        R.add("list user sessions", wrk(sd_port, "list.lua", [tokens, str(max(1, a.population // 10))],
                                        a.duration, proc=sd))
        R.add("update If-Match", wrk(sd_port, "update.lua", [tokens], a.duration, proc=sd))
        R.add("create (durable)", wrk(sd_port, "create.lua", [], a.duration, proc=sd))
        R.add("mixed 4:1", wrk(sd_port, "mixed.lua", [tokens], a.duration, proc=sd))
        print(f"# rep {rep + 1} done", flush=True)
    redis_rps = redis_benchmark(redis_port) if redis else 0.0
    for p in (sd, nginx, peer, redis):
        if p:
            stop(p)

    tls_rows(a, R, main_dir, tokens)
    minting_rows(a, R, main_dir, tokens, notes)
    if not a.no_scaleout:
        scaleout(a, R, notes)
    idle = idle_connections(a.idle) if a.idle else None
    writes, write_notes = write_targets(a.duration, min(a.population, 100000), not a.no_scaleout,
                                        rounds=a.reps)

    scaling = []
    for n in [int(x) for x in a.sizes.split(",") if x]:
        tk = os.path.join(TMP, f"tokens-{n}.txt")
        sdn, port, load_s, start_s = loaded_sessiond(n, tk)
        anon = status_kb(sdn.pid, "RssAnon")
        rs = [wrk(port, "validate_token.lua", [tk], a.duration, proc=sdn) for _ in range(a.reps)]
        scaling.append((n, statistics.median(x["rps"] for x in rs),
                        statistics.median(x["p99_us"] for x in rs) / 1000,
                        peak_rss_kb([sdn.pid]) / 1024, anon / 1024, load_s, start_s))
        stop(sdn)
        os.remove(tk)

    head = ("| scenario | req/s (median) | spread | p50 ms | p99 ms | p99.9 ms | server CPU | "
            "peak RSS MB | errors+non-2xx | ratio |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head, R.line("nginx return 200")]
    lines.append(R.line("validate token", "nginx return 200"))
    lines.append(R.line("validate id", "nginx return 200"))
    if peer:
        lines.append(R.line("express-session validate", "nginx return 200"))
        base = R.med("express-session validate", "rps")
        notes.append(f"validate token vs express-session peer: "
                     f"{R.med('validate token', 'rps') / base:.1f}x")
    for name in ("list user sessions", "update If-Match", "create (durable)", "mixed 4:1"):
        lines.append(R.line(name, "nginx return 200"))
    lines.append(R.line("validate token (plain, same store)", "nginx return 200"))
    lines.append(R.line("validate token over TLS", "validate token (plain, same store)"))
    lines.extend(minting_lines(R))
    if redis_rps:
        notes.append(f"redis-benchmark GET (-c 64, no pipelining): {redis_rps:,.0f} req/s")
    for name in ("PG+Redis: validate token", "PG+Redis: create", "PG: validate token", "PG: create"):
        if name in R.rows:
            lines.append(R.line(name, "nginx return 200"))
    lines.append("")
    lines.append("| stored sessions | validate req/s | p99 ms | peak RSS MB | anonymous RSS MB | "
                 "bytes/session beyond the smallest | vs smallest | load s | start s |\n"
                 "|---|---|---|---|---|---|---|---|---|")
    n0, rps0, _, _, anon0, _, _ = scaling[0] if scaling else (0, 1, 0, 0, 0, 0, 0)
    for n, rps, p99, rss, anon, load_s, start_s in scaling:
        per = f"{(anon - anon0) * 1048576 / (n - n0):,.0f}" if n > n0 else "-"
        lines.append(f"| {n:,} | {rps:,.0f} | {p99:.2f} | {rss:.0f} | {anon:.0f} | {per} | "
                     f"{rps / rps0:.2f}x | {load_s:.0f} | {start_s:.1f} |")
    lines.append("")
    lines.extend(jwt_verify_rows(max(1, min(a.duration, 5))))
    lines.append("")
    lines.append("| write (issue 13's targets) | per second | p99 ms |\n|---|---|---|")
    for name, rps, p99 in writes:
        lines.append(f"| {name} | {rps:,.0f} | {p99:.1f} |")
    notes.extend(write_notes)
    if idle:
        notes.append(f"{a.idle:,} idle keep-alive connections (one request each): RSS "
                     f"{idle[0]:.0f} MB -> {idle[1]:.0f} MB, {idle[1] - idle[0]:.1f} MB added "
                     f"({(idle[1] - idle[0]) * 1024 / a.idle:.2f} KB per connection)")
    notes.append("scaling rows: sessions bulk-loaded into the embedded store (bench/load.py), "
                 "validated by a sample of up to 200,000 of their tokens; anonymous RSS right "
                 "after the start (the in-memory index, SQLite's page caches; not the mmap'd file)")
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(f"<!-- written by bench/bench.py on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                f"{os.cpu_count()} CPUs -->\n" + text)


try:
    main()
finally:
    for p in list(PROCS):
        stop(p)
    shutil.rmtree(TMP, ignore_errors=True)

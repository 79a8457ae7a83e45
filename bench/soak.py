#!/usr/bin/env python3
"""sessiond soak (make soak, never in make test): a steady mixed load (the
article's mix, bench/lua/mixed.lua) for --minutes (default 60) against a
sessiond with a populated store, sampling the server's RSS and open file
descriptors every --every seconds. Prints the samples, with the answers of
each window by status class (4xx are a client's mistakes the mix can make
on purpose; 5xx are the server's) and wrk's socket errors and timeouts, and a
verdict: RSS and descriptors must be flat (the last quarter's median within
--slack of the second quarter's; the first quarter is warm-up) and no
request may be answered 5xx.

With --store postgres the sessiond writes to a private PostgreSQL 15 and,
with --cache too, validates through a private Redis in front of it (the
scale-out mode, tests/e2e/pgserver.py and redisserver.py start them on
free loopback ports in temporary directories and stop them after).

  bench/soak.py [--minutes 60] [--every 10] [--sessions 100000] [--slack 0.10]
                [--store sqlite|postgres] [--cache]
"""
import argparse
import os
import shutil
import statistics
import sys
import time

import harness
from harness import PROCS, TMP, populate, start_sessiond, stop, wrk

sys.path.insert(0, os.path.join(harness.ROOT, "tests", "e2e"))


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def active_sessions(port):
    """sessiond_sessions_active from /metrics (the store's live rows: the
    mix creates a little more than it deletes, so RSS may follow it)."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("sessiond_sessions_active "):
                    return int(float(line.split()[1]))
    except OSError:
        pass
    return -1


def flat(values, slack):
    # Medians: a sample taken while wrk's connections are still closing
    # shows a few more descriptors; the level they return to is what counts.
    q = max(1, len(values) // 4)
    warm, last = statistics.median(values[q:2 * q]), statistics.median(values[-q:])
    return last <= warm * (1 + slack) + 1, warm, last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--sessions", type=int, default=100000)
    ap.add_argument("--slack", type=float, default=0.10)
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--cache", action="store_true", help="a Redis cache tier (with --store postgres)")
    a = ap.parse_args()
    if a.cache and a.store != "postgres":
        ap.error("--cache goes with --store postgres")
    extra, services = [], []
    if a.store == "postgres":
        import pgserver
        pg = pgserver.PgServer()
        services.append(pg)
        pg.psql("CREATE DATABASE soak")
        extra += ["--store", pg.url("soak")]
    if a.cache:
        import redisserver
        rs = redisserver.RedisServer()
        services.append(rs)
        extra += ["--cache", rs.url()]
    try:
        return soak(a, extra)
    finally:
        for svc in reversed(services):
            svc.close()


def soak(a, extra):
    proc, port = start_sessiond(extra)
    path = os.path.join(TMP, "tokens.txt")
    populate(port, a.sessions, path)
    end = time.time() + a.minutes * 60
    rows = []
    where = a.store + (" + Redis cache" if a.cache else "")
    print(f"soak: {a.minutes:g} min of mixed load on {where}, {a.sessions} sessions, "
          f"sampling every {a.every:g} s")
    print("| minute | req/s | p50 ms | p99 ms | p99.9 ms | 4xx | 5xx | socket errors | sessions | RSS MB | fds |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    total = {"requests": 0, "s4xx": 0, "s5xx": 0, "errors": 0}
    while time.time() < end:
        r = wrk(port, "mixed.lua", [path], duration=max(1, int(a.every)), conns=32, proc=proc)
        rss, fds = sample(proc.pid)
        rows.append((rss, fds))
        for k in total:
            total[k] += r[k]
        print(f"| {(a.minutes * 60 - (end - time.time())) / 60:.1f} | {r['rps']:,.0f} | "
              f"{r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | {r['p999_us'] / 1000:.2f} | "
              f"{r['s4xx']} | {r['s5xx']} | {r['errors']} | {active_sessions(port):,} | {rss:.0f} | {fds} |",
              flush=True)
    ok_rss, w_rss, l_rss = flat([x[0] for x in rows], a.slack)
    ok_fds, w_fds, l_fds = flat([x[1] for x in rows], a.slack)
    print(f"RSS {w_rss:.0f} -> {l_rss:.0f} MB: {'flat' if ok_rss else 'GROWING'}; "
          f"fds {w_fds:.0f} -> {l_fds:.0f}: {'flat' if ok_fds else 'GROWING'}; "
          f"{total['requests']:,} requests: {total['s4xx']:,} 4xx, {total['s5xx']:,} 5xx, "
          f"{total['errors']:,} socket errors")
    stop(proc)
    return 0 if ok_rss and ok_fds and total["s5xx"] == 0 else 1


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        for p in list(PROCS):
            stop(p)
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)

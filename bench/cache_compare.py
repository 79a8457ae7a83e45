#!/usr/bin/env python3
"""Validation throughput on PostgreSQL without and with the Redis cache tier,
back to back on this machine: starts a private PostgreSQL 15 and a private
Redis 7 (tests/e2e/pgserver.py, redisserver.py), then build/sessiond in each
mode, populates 10,000 sessions and runs wrk -t2 -c64 -d10s with the given
bench/lua scripts (a warm-up pass first fills the cache). Not part of make
bench or make test.
Usage: bench/cache_compare.py validate_token.lua"""
import os, shutil, subprocess, sys, time, signal, tempfile, requests
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
WRK_THREADS = 2  # wrk -t, passed to the scripts too (update.lua splits its ids by thread)
import pgserver, redisserver
BIN = os.path.join(REPO, "build", "sessiond")
os.chdir(REPO)
def start(args, port):
    d = tempfile.mkdtemp(prefix="sdb-")
    p = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{port}", "--data-dir", d, "--log-level", "warn",
                          "--max-sessions-per-user", "0", *args], stdout=subprocess.DEVNULL, stderr=open(d + "/err", "w"))
    for _ in range(200):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200: break
        except Exception: pass
        time.sleep(0.05)
    return p, d
def wrk(port, script, arg, secs=10):
    r = subprocess.run(["wrk", f"-t{WRK_THREADS}", "-c64", f"-d{secs}s", "-s", f"bench/lua/{script}", f"http://127.0.0.1:{port}", "--", arg],
                       capture_output=True, text=True, env=dict(os.environ, WRK_THREADS=str(WRK_THREADS)))
    line = [l for l in r.stdout.splitlines() if l.startswith("BENCHJSON")][0]
    rps = [l for l in r.stdout.splitlines() if "Requests/sec" in l][0]
    return rps.strip() + " " + line[10:]
pg = pgserver.PgServer()
rd = redisserver.RedisServer()
try:
    for name, db, extra in (("postgres", "bench", []), ("postgres+redis", "bench_cache", ["--cache", rd.url()])):
        pg.psql(f"CREATE DATABASE {db}")
        port = pgserver._free_port()
        p, d = start(["--store", pg.url(db), *extra], port)
        toks = os.path.join(tempfile.gettempdir(), f"sessiond-tokens-{db}")
        subprocess.run(["python3", "bench/populate.py", f"127.0.0.1:{port}", "10000", toks], check=True)
        for script in sys.argv[1:]:
            wrk(port, script, toks, 3)  # warm-up (fills the cache)
            print(name, script, wrk(port, script, toks), flush=True)
        m = requests.get(f"http://127.0.0.1:{port}/metrics").text
        print("\n".join(l for l in m.splitlines() if l.startswith("sessiond_cache")), flush=True)
        p.send_signal(signal.SIGTERM); p.wait()
        shutil.rmtree(d, ignore_errors=True)
finally:
    rd.close()
    pg.close()

#!/usr/bin/env python3
"""Validation and create throughput, embedded store vs PostgreSQL, back to back
on this machine: starts a private PostgreSQL 15 (tests/e2e/pgserver.py), then
build/sessiond in each mode, populates 10,000 sessions and runs wrk -t2 -c64
-d10s with the given bench/lua scripts. Not part of make bench or make test.
Usage: bench/pg_compare.py validate_token.lua validate_id.lua create.lua
PG_MODES="name:args;name:args" replaces the default modes ("sqlite:" and
"postgres:"), e.g. PG_MODES="pool0:--handler-threads 0;pool16:--handler-threads 16"
(a mode whose name does not start with "sqlite" runs on PostgreSQL)."""
import os, shutil, subprocess, sys, time, signal, tempfile, requests
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
WRK_THREADS = 2  # wrk -t, passed to the scripts too (update.lua splits its ids by thread)
import pgserver
BIN = os.environ.get("SESSIOND_BIN") or os.path.join(REPO, "build", "sessiond")
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
def wrk(port, script, arg):
    r = subprocess.run(["wrk", f"-t{WRK_THREADS}", "-c64", "-d10s", "-s", f"bench/lua/{script}", f"http://127.0.0.1:{port}", "--", arg],
                       capture_output=True, text=True, env=dict(os.environ, WRK_THREADS=str(WRK_THREADS)))
    line = [l for l in r.stdout.splitlines() if l.startswith("BENCHJSON")][0]
    rps = [l for l in r.stdout.splitlines() if "Requests/sec" in l][0]
    return rps.strip() + " " + line[10:]
pg = pgserver.PgServer()
try:
    modes = [m.split(":", 1) for m in os.environ.get("PG_MODES", "sqlite:;postgres:").split(";")]
    for i, (name, extra) in enumerate(modes):
        args = extra.split()
        if not name.startswith("sqlite"):
            pg.psql(f"CREATE DATABASE bench{i}")
            args = ["--store", pg.url(f"bench{i}")] + args
        port = pgserver._free_port()
        p, d = start(args, port)
        toks = os.path.join(tempfile.gettempdir(), f"sessiond-tokens-{name}")
        subprocess.run(["python3", "bench/populate.py", f"127.0.0.1:{port}", "10000", toks], check=True)
        for script in sys.argv[1:]:
            print(name, script, wrk(port, script, toks), flush=True)
        p.send_signal(signal.SIGTERM); p.wait()
        shutil.rmtree(d, ignore_errors=True)
finally:
    pg.close()

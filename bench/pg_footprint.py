#!/usr/bin/python3
"""Storage and WAL footprint of sessions on the PostgreSQL backend
(docs/capacity.md): creates N sessions of about 1 KB each (the design
article's size) through one sessiond, ends them all (DELETE), and reports
bytes per row of each table with its indexes and WAL bytes per create and per
delete. A private PostgreSQL 15 (tests/e2e/pgserver.py), nothing else
touched. Not part of make test.

Usage: bench/pg_footprint.py [--sessions 5000] [--bin build/sessiond]
"""
import argparse
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import pgserver  # noqa: E402

TABLES = ("sessions", "session_history", "audit_events", "rotated_tokens")


def one_kb_session(i):
    return {"userId": f"user-{i % 997:05d}@example.com", "ipAddress": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
            "deviceId": f"device-{i:08d}", "geoLocation": "DE-BE",
            "data": {"plan": "pro", "roles": ["reader", "writer"], "note": "x" * 640}}


def sizes(pg):
    out = {}
    for t in TABLES:
        n, b = pg.psql(f"SELECT count(*), pg_total_relation_size('{t}') FROM {t}", db="fp").strip().split("\x1f")
        out[t] = (int(n), int(b))
    return out


def lsn(pg):
    return int(pg.psql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn", db="fp").strip().split(".")[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--bin", default=str(REPO / "build" / "sessiond"))
    args = ap.parse_args()
    pg = pgserver.PgServer()
    work = Path(tempfile.mkdtemp(prefix="sessiond-fp-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = None
    try:
        pg.psql("CREATE DATABASE fp")
        proc = subprocess.Popen([args.bin, "--listen", f"127.0.0.1:{port}", "--data-dir", str(work),
                                 "--store", pg.url("fp"), "--max-sessions-per-user", "0"],
                                stdout=subprocess.DEVNULL, stderr=open(work / "log", "wb"))
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        http = requests.Session()
        created = []

        def create(i):
            r = requests.post(url + "/sessions", json=one_kb_session(i), timeout=30)
            r.raise_for_status()
            return r.json()["sessionId"]

        body = len(http.post(url + "/sessions", json=one_kb_session(-1)).content)
        pg.psql("CHECKPOINT", db="fp")
        w0 = lsn(pg)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            created = list(ex.map(create, range(args.sessions)))
        t_create = time.monotonic() - t0
        w1 = lsn(pg)
        pg.psql("VACUUM ANALYZE", db="fp")
        after_create = sizes(pg)
        w2 = lsn(pg)
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda sid: requests.delete(f"{url}/sessions/{sid}", timeout=30).raise_for_status(),
                        created))
        w3 = lsn(pg)
        pg.psql("VACUUM ANALYZE", db="fp")
        after_delete = sizes(pg)
        n = args.sessions
        print(f"sessions: {n} of ~1 KB (create response {body} bytes), created in {t_create:.1f} s "
              f"({n / t_create:,.0f}/s, 16 Python threads, one sessiond)")
        print(f"WAL per create: {(w1 - w0) / n:,.0f} bytes; per delete (to history): {(w3 - w2) / n:,.0f} bytes")
        for label, sz in (("after creates", after_create), ("after deletes", after_delete)):
            print(label + ": " + ", ".join(
                f"{t} {c} rows {b / 1024:,.0f} KiB ({b / c:,.0f} B/row)" if c else f"{t} empty ({b / 1024:,.0f} KiB)"
                for t, (c, b) in sz.items()))
    finally:
        if proc and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        pg.close()


if __name__ == "__main__":
    main()

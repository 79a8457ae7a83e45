#!/usr/bin/python3
"""Redis memory per cached session and per tombstone (docs/capacity.md,
section 5): a private PostgreSQL 15 and Redis (tests/e2e/pgserver.py,
redisserver.py), one sessiond with --cache; N creates of the design
article's 1 KB shape (user agent, device, location, a 700-byte `data`,
which is not cached), then N deletes; Redis's `used_memory` before and
after each. Everything is stopped by PID.

Usage: bench/cache_footprint.py [--sessions 10000]
"""
import argparse
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SESSIOND_BIN", str(REPO / "build" / "sessiond"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import pgserver  # noqa: E402
import redisserver  # noqa: E402
from conftest import Server  # noqa: E402

BODY = {"userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                     "Version/17.1 Safari/605.1.15",
        "ipAddress": "203.0.113.7", "deviceId": "device-0123456789abcdef", "deviceInfo": "macOS 14, Safari 17",
        "geoLocation": {"lat": 48.86, "lon": 2.35, "country": "FR"}, "data": {"blob": "x" * 700}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10000)
    n = ap.parse_args().sessions
    root = Path(tempfile.mkdtemp(prefix="sessiond-cache-footprint-"))
    pg = redis = srv = None
    try:
        pg = pgserver.PgServer()
        pg.psql("CREATE DATABASE footprint")
        redis = redisserver.RedisServer()
        srv = Server(root / "s", ["--store", pg.url("footprint"), "--cache", redis.url(),
                                  "--max-sessions-per-user", "0"]).start()

        def used():
            time.sleep(1)  # the write-through is not awaited by a create's answer
            info = redis.cmd("INFO", "memory").decode()
            return int(next(line for line in info.split() if line.startswith("used_memory:")).split(":")[1])
        m0 = used()

        def create(i):
            r = srv.api.request("POST", "/sessions", json=dict(BODY, userId=f"footprint-{i}"))
            return r.json()["sessionId"] if r.status_code == 201 else None
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            ids = [i for i in ex.map(create, range(n)) if i]
        m1 = used()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            deleted = sum(ex.map(lambda sid: srv.api.request("DELETE", f"/sessions/{sid}").status_code == 204, ids))
        m2 = used()
        print(f"{len(ids):,} sessions cached: {(m1 - m0) / len(ids):,.0f} bytes each; "
              f"{deleted:,} deleted: {(m2 - m0) / deleted:,.0f} bytes per tombstone left "
              f"(Redis used_memory, {redis.cmd('DBSIZE')} keys at the end)")
        return 0
    finally:
        if srv:
            srv.stop(expect_rc=None)
        for x in (redis, pg):
            if x:
                x.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

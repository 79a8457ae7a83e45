#!/usr/bin/python3
"""make region-failover: what a region failover on asynchronous streaming
replication costs, measured on loopback (docs/capacity.md, "Region-level
outage").

Region A: a PostgreSQL 15 primary and a sessiond on it under the mixed load
of make chaos (tests/e2e/chaosload.py: validations, creates, updates,
deletes). Region B: an asynchronous streaming standby of that primary
(pg_basebackup, hot standby) and a sessiond pointed at it with
target_session_attrs=read-write (not ready while the database is a
standby). All on 127.0.0.1: there is no distance between the regions here,
so the lag measured is the floor of a real link's (add the link's one-way
delay to it).

While the load runs, the replication lag is sampled on the primary every
100 ms (pg_stat_replication: bytes not yet replayed, replay_lag). Then
region A is lost under load (its postmaster and every backend SIGKILLed),
the standby is promoted (pg_ctl promote) and region B's sessiond resumes by
itself. Afterwards: every create region A acknowledged is looked for in
region B's database, and every session region A revoked (DELETE 204) is
looked for among B's active sessions. Printed: the lag, the promotion and
resumption times, the acknowledged creates lost and the revocations undone
with how long before the loss they were acknowledged. Nothing is asserted;
every process is stopped by PID.
"""
import argparse
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SESSIOND_BIN", str(REPO / "build" / "sessiond"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import chaosload  # noqa: E402
import pgserver  # noqa: E402
from conftest import Server  # noqa: E402


class Worker(chaosload.Worker):
    """A chaos load client that remembers when each create was acknowledged."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.acked_at = {}

    def create(self, record=True):
        before = set(self.sessions)
        status = super().create(record)
        for sid in set(self.sessions) - before if record else ():
            self.acked_at[sid] = time.monotonic()
        return status


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60, help="load before region A is lost (default 60)")
    ap.add_argument("--rate", type=float, default=300, help="requests per second (default 300)")
    args = ap.parse_args()
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"sessiond-region-{os.getpid()}"
    primary = standby = None
    servers, ws = [], []
    try:
        primary = pgserver.PgServer()
        primary.psql("CREATE DATABASE sessiond")
        standby = pgserver.PgServer(standby_of=primary)
        a = Server(root / "region-a", ["--store", primary.url("sessiond"), "--failed-validation-rate", "0"])
        servers.append(a.start())
        b = Server(root / "region-b", ["--store", standby.url("sessiond") + "?target_session_attrs=read-write"])
        servers.append(b.start())
        rev = chaosload.Revocations([a.port], 1, 5.0)      # a record of revocations; its checkers never run
        results, workers = [], 12
        ws = [Worker(i, a.port, args.rate / workers, float("inf"), rev, results, 5.0, 7, 10 ** 6)
              for i in range(workers)]
        for w in ws:
            for _ in range(10):
                w.create(record=False)
        for w in ws:
            w.start()
        samples, t_end = [], time.monotonic() + args.seconds
        while time.monotonic() < t_end:
            out = primary.psql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), "
                               "COALESCE(EXTRACT(epoch FROM replay_lag), 0) FROM pg_stat_replication").strip()
            if out:
                bytes_behind, lag = out.splitlines()[0].split("\x1f")
                samples.append((float(bytes_behind), float(lag)))
            time.sleep(0.1)
        primary.crash()                                     # region A is lost, under load
        t_lost = time.monotonic()
        for w in ws:
            w.stop_at = 0
        t0 = time.monotonic()
        standby.promote()
        t_promoted = time.monotonic()
        resumed = None
        while resumed is None and time.monotonic() < t_promoted + 60:
            if b.api.request("POST", "/sessions", json={"userId": "region-b"}).status_code == 201:
                resumed = time.monotonic()
            else:
                time.sleep(0.02)
        for w in ws:
            w.join()
        found = set(standby.psql("SELECT id FROM sessions UNION ALL SELECT id FROM session_history",
                                 "sessiond").split())
        active = set(standby.psql("SELECT id FROM sessions", "sessiond").split())
        acked = {sid: t for w in ws for sid, t in w.acked_at.items()}
        lost = {sid: t_lost - t for sid, t in acked.items() if sid not in found}
        undone = {sid: t_lost - t for sid, _, t in rev.tokens if sid in active}
        writes = sum(1 for r in results if r[0] in chaosload.WRITES and r[3])
        print(f"region failover on loopback: {args.seconds:.0f} s of load at {args.rate:g} req/s offered, "
              f"{len(samples)} lag samples, load average {os.getloadavg()[0]:.1f}")
        print(f"| replay lag (time) p50 / p99 / max | {1000 * pct([s[1] for s in samples], 50):.1f} / "
              f"{1000 * pct([s[1] for s in samples], 99):.1f} / {1000 * max(s[1] for s in samples):.1f} ms |")
        print(f"| WAL not yet replayed p50 / p99 / max | {pct([s[0] for s in samples], 50):,.0f} / "
              f"{pct([s[0] for s in samples], 99):,.0f} / {max(s[0] for s in samples):,.0f} bytes |")
        print(f"| acknowledged writes in region A | {writes:,} ({len(acked):,} creates, {len(rev.tokens):,} "
              "deletes) |")
        print(f"| acknowledged creates missing in region B | {len(lost)}"
              + (f" (acknowledged {min(lost.values()) * 1000:.0f} to {max(lost.values()) * 1000:.0f} ms "
                 "before the loss)" if lost else "") + " |")
        print(f"| revocations undone (revoked in A, active in B) | {len(undone)}"
              + (f" (acknowledged {min(undone.values()) * 1000:.0f} to {max(undone.values()) * 1000:.0f} ms "
                 "before the loss)" if undone else "") + " |")
        print(f"| standby promoted (pg_ctl promote -w) | {1000 * (t_promoted - t0):.0f} ms after the order |")
        print("| region B's sessiond writes again | "
              + (f"{1000 * (resumed - t_promoted):.0f} ms after the promotion |" if resumed else "not within 60 s |"))
        return 0
    finally:
        for w in ws:
            w.halt.set()
        for s in servers:
            if s.running():
                s.stop(expect_rc=None)
            s.kill9()
        for pg in (standby, primary):
            if pg:
                pg.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

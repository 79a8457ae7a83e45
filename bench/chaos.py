#!/usr/bin/python3
"""make chaos: three sessiond replicas on PostgreSQL under Patroni and Redis
under Sentinel, behind haproxy, under a steady mixed load while one
component after another is killed with SIGKILL and started again; prints
what the clients saw and the two numbers that must be zero.

The topology, the schedule and the load are tests/e2e/chaos.py and
chaosload.py (they reuse the test harness: patroni.py, sentinelserver.py,
lbserver.py, conftest.Server); tests/e2e/test_chaos.py runs a short
version in the test suite. Exit status 1 when an acknowledged write was
lost or a revoked session validated after its DELETE returned (or the run
could not be completed), 0 otherwise: the other figures are printed, not
judged.

Usage: bench/chaos.py [--minutes M] [--rate R] [--faults a,b,...] [--seed N]
Environment: CHAOS_MINUTES (default 5), CHAOS_RATE (default 200 requests/s),
SESSIOND_BIN (default build/sessiond).
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SESSIOND_BIN", str(REPO / "build" / "sessiond"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import chaos  # noqa: E402
import chaosreport  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("CHAOS_MINUTES", "5")))
    ap.add_argument("--rate", type=float, default=float(os.environ.get("CHAOS_RATE", "200")),
                    help="requests per second offered by the load (default 200)")
    ap.add_argument("--faults", default=",".join(chaos.FAULTS),
                    help=f"comma-separated, in order (default {','.join(chaos.FAULTS)})")
    ap.add_argument("--workers", type=int, default=24)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--logs", help="copy the sessiond, haproxy and Patroni logs into this directory")
    args = ap.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(chaos.FAULTS)
    if unknown:
        ap.error(f"unknown fault(s) {', '.join(sorted(unknown))}; known: {', '.join(chaos.FAULTS)}")

    def interrupted(*_):
        # Once: a second Ctrl-C or SIGTERM would interrupt the stopping of
        # the topology (chaos.run's finally) and leave its processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    seconds = args.minutes * 60
    print(f"make chaos at {commit}: {seconds:.0f} s, {args.rate:g} req/s offered by {args.workers} clients, "
          f"seed {args.seed}, {os.environ['SESSIOND_BIN']}", flush=True)
    try:
        s = chaos.run(seconds, args.rate, faults, workers=args.workers, seed=args.seed, logs=args.logs,
                      log=lambda m: print(m, flush=True))
    except KeyboardInterrupt:
        print("\ninterrupted: everything stopped", file=sys.stderr)
        return 130
    except Exception as e:
        print(f"chaos: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except BaseException as e:  # the harness's pytest.fail (Failed is not an Exception)
        if isinstance(e, SystemExit):
            raise
        print(f"chaos: {e}", file=sys.stderr)
        return 1
    load = os.getloadavg()
    print()
    print(chaosreport.table(s, header=f"### make chaos at {commit}: {s['duration']:.0f} s, {len(faults)} "
                                      f"faults, {args.rate:g} req/s offered (load average {load[0]:.1f})"))
    print()
    for what, met, figure in chaosreport.targets(s):
        print(f"target {'met   ' if met else 'MISSED'}  {what}: {figure}")
    if any(s["exit_codes"]):
        print(f"\nthe replicas' exit codes after SIGTERM at the end: {s['exit_codes']}", file=sys.stderr)
    if s.get("error"):
        print(f"\nthe schedule failed: {s['error']}", file=sys.stderr)
        return 1
    return 1 if s["lost"] or s["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())

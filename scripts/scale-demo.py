#!/usr/bin/python3
"""make scale-demo: sessiond's scale-out mode on one machine.

Starts a private PostgreSQL 15 (temporary directory, loopback port, as the
postgres user when run as root), a private Redis (the validation cache), two
sessiond replicas sharing both (each with
its own data directory for its replica id and audit log) and haproxy in
front of them (round-robin, health checks on /readyz), all on 127.0.0.1.
Prints the URL and waits; Ctrl-C (or SIGTERM) stops everything by PID and
removes the temporary directory. Reuses the test suite's helpers
(tests/e2e/pgserver.py, tests/e2e/lbserver.py).

Usage: scripts/scale-demo.py [--port 8080] [--replicas 2] [--bin build/sessiond]
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import lbserver  # noqa: E402
import pgserver  # noqa: E402
import redisserver  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url, proc, log, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sessiond exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"sessiond at {url} did not become healthy:\n{log.read_text(errors='replace')[-2000:]}")


def stop(proc, timeout=15):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("SCALE_DEMO_PORT", "8080")),
                    help="haproxy's port on 127.0.0.1 (default 8080, env SCALE_DEMO_PORT)")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--bin", default=str(REPO / "build" / "sessiond"))
    args = ap.parse_args()

    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: it may arrive ignored (background job)
        signal.signal(sig, lambda *_: stopping.append(1))
    root = Path(tempfile.mkdtemp(prefix="sessiond-scale-demo-"))
    pg, lb, cache, replicas = None, None, None, []
    try:
        pg = pgserver.PgServer()
        pg.psql("CREATE DATABASE sessiond")
        store = pg.url("sessiond")
        print(f"postgresql  {store}  (data in {pg.root})", flush=True)
        cache = redisserver.RedisServer()  # the validation cache all replicas share
        print(f"redis       {cache.url()}  (no persistence: see docs/architecture.md)", flush=True)
        for i in range(args.replicas):
            port = free_port()
            data = root / f"replica{i}"
            data.mkdir()
            log = root / f"replica{i}.log"
            with open(log, "wb") as f:
                proc = subprocess.Popen([args.bin, "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                                         "--store", store, "--cache", cache.url()],
                                        stdin=subprocess.DEVNULL, stdout=f, stderr=f)
            replicas.append((proc, port, log))
            wait_healthy(f"http://127.0.0.1:{port}", proc, log)
            print(f"replica {i}   http://127.0.0.1:{port}  (pid {proc.pid}, log {log})", flush=True)
        lb = lbserver.HaProxy([(f"r{i}", f"127.0.0.1:{p}") for i, (_, p, _) in enumerate(replicas)],
                              workdir=root / "haproxy", port=args.port)
        lb.start()
        print(f"haproxy     http://127.0.0.1:{lb.stats_port}/stats  (backend states)", flush=True)
        print(f"\nsessiond (scale-out) at http://127.0.0.1:{lb.port}   Ctrl-C stops everything\n", flush=True)
        print(f"  curl -s -X POST http://127.0.0.1:{lb.port}/sessions -H 'Content-Type: application/json' "
              "-d '{\"userId\":\"alice\"}'", flush=True)
        gone = set()
        while not stopping:
            for i, (proc, _, log) in enumerate(replicas):
                if i not in gone and proc.poll() is not None:
                    gone.add(i)
                    print(f"replica {i} exited with {proc.returncode} (log {log}); haproxy routes around it",
                          flush=True)
            time.sleep(0.5)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"scale-demo: {e}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping...", flush=True)
        if lb:
            lb.stop()
        for proc, _, _ in replicas:
            stop(proc)
        if cache:
            cache.close()
        if pg:
            pg.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

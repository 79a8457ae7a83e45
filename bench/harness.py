"""Shared by the benchmark scripts (bench.py, soak.py): starting and
stopping processes by PID on loopback ports, wrk runs with server CPU and
RSS, and a sessiond with a populated store."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
LUA = os.path.join(BENCH, "lua")
# SESSIOND_BIN: another build to measure (an A/B comparison of two commits).
SESSIOND = os.environ.get("SESSIOND_BIN") or os.path.join(ROOT, "build", "sessiond")
TMP = tempfile.mkdtemp(prefix="sessiond-bench-")
PROCS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def start(args, port, log, env=None, timeout=30):
    with open(os.path.join(TMP, log), "ab") as f:
        p = subprocess.Popen(args, stdout=f, stderr=f, env=env, start_new_session=True)
    PROCS.append(p)
    wait_port(port, p, timeout)
    return p


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def tree_pids(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    kids = [int(x) for x in out.stdout.split()]
    return [pid] + [k for c in kids for k in tree_pids(c)]


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def peak_rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+)", f.read())
                total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total


def settle(pids, quiet_pct=5.0, limit_s=60.0):
    """Waits until the processes are idle (under quiet_pct of a core over
    half a second, at most limit_s): a row measures its own load, not the
    checkpoint of the previous row's writes still running. Returns the
    seconds waited."""
    hz = os.sysconf("SC_CLK_TCK")
    start = time.time()
    while time.time() - start < limit_s:
        c0 = cpu_ticks(pids)
        time.sleep(0.5)
        if (cpu_ticks(pids) - c0) / hz / 0.5 * 100 < quiet_pct:
            break
    return time.time() - start


WRK_THREADS = 2  # the scripts that split their work by thread read it (update.lua)


def wrk(port, script, args=(), duration=5, conns=64, proc=None, scheme="http"):
    pids = tree_pids(proc.pid) if proc else []
    if pids:
        settle(pids)
    c0, t0 = cpu_ticks(pids), time.time()
    cmd = ["wrk", f"-t{WRK_THREADS}", f"-c{conns}", f"-d{duration}s", "-s",
           os.path.join(LUA, script), f"{scheme}://127.0.0.1:{port}", "--"] + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env=dict(os.environ, BENCH_LUA=LUA, WRK_THREADS=str(WRK_THREADS)))
    wall = time.time() - t0
    m = re.search(r"BENCHJSON (\{.*\})", out.stdout)
    if not m:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    hz = os.sysconf("SC_CLK_TCK")
    r["cpu"] = (cpu_ticks(pids) - c0) / hz / wall * 100 if pids else 0
    r["rss_mb"] = peak_rss_kb(pids) / 1024 if pids else 0
    return r


def status_kb(pid, field):
    """A /proc/PID/status figure in KiB (VmRSS, VmHWM, RssAnon, ...), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(field + r":\s+(\d+)", f.read())
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def start_sessiond(extra=(), data_dir=None, timeout=30):
    port = free_port()
    d = data_dir or tempfile.mkdtemp(dir=TMP)
    p = start([SESSIOND, "--listen", f"127.0.0.1:{port}", "--data-dir", d, "--log-level", "warn",
               "--max-connections-per-ip", "0",
               # The guessing throttle on, as by default (every validation
               # asks it), with a bucket no row can empty: all load comes
               # from one address, and the mixed load's renewed (retired)
               # tokens would otherwise turn into 429s.
               "--failed-validation-rate", "1000000", "--failed-validation-burst", "1000000"]
              + list(extra), port, "sessiond.log", timeout=timeout)
    return p, port


def populate(port, n, path):
    t = time.time()
    subprocess.run([sys.executable, os.path.join(BENCH, "populate.py"), f"127.0.0.1:{port}", str(n),
                    path], check=True)
    return time.time() - t


def loaded_sessiond(n, path, extra=()):
    """A sessiond whose embedded store holds n live sessions, bulk-loaded by
    load.py (the schema comes from a first start). Returns the process, its
    port, the load's and the second start's seconds (the start loads the
    in-memory index from the table)."""
    d = tempfile.mkdtemp(dir=TMP)
    p, _ = start_sessiond(extra, d)
    stop(p)
    t = time.time()
    subprocess.run([sys.executable, os.path.join(BENCH, "load.py"), d, str(n), path], check=True)
    load_s = time.time() - t
    t = time.time()
    p, port = start_sessiond(extra, d, timeout=900)
    return p, port, load_s, time.time() - t

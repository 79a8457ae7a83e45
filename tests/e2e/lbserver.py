"""A private haproxy in front of sessiond replicas (tests and make scale-demo).

config_text: round-robin over the given backends, health checks on GET
/readyz (a replica whose store is down, or that is gone, leaves the
rotation within a few checks), and a stats listener whose CSV export says which backends are UP.
The server side of every request is a fresh connection (http-server-close),
so a request is never sent on a connection to a replica that has died: only
requests in flight on a replica at the moment it dies can fail (502), every
later one is dispatched to a live replica (a refused connect is retried on
another one). shipped_config runs a file of deploy/haproxy/ instead, only
its addresses replaced. Runs in the foreground (-db) as a child, stopped by
PID.
"""

import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(port, stats_port, backends):
    """haproxy.cfg for `backends` (a list of (name, host:port))."""
    servers = "".join(f"    server {name} {addr} check\n" for name, addr in backends)
    return f"""# Written by tests/e2e/lbserver.py: sessiond replicas behind one address.
global
    maxconn 2000

defaults
    mode http
    option http-server-close
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # A refused connect (replica gone) is retried, the last try on another server.
    retries 3
    option redispatch

frontend sessiond
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1
{servers}
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


def shipped_config(path, backends, bind="bind *:8080", stats_bind="bind 127.0.0.1:7001"):
    """A shipped configuration (deploy/haproxy/sessiond.cfg) for
    `backends` ([(name, host:port)]), as a function of (port, stats_port)
    for HaProxy's config=: its bind lines and server lines replaced, every
    other line as shipped. A template that no longer has them fails here
    rather than running something else."""
    text = Path(path).read_text()
    servers = [line for line in text.splitlines() if re.match(r"\s+server\s", line)]
    assert servers and bind in text and stats_bind in text, f"{path}: no server lines, '{bind}' or '{stats_bind}'"
    options = re.sub(r"^\s*server\s+\S+\s+\S+\s*", "", servers[0])

    def config(port, stats_port):
        out, placed = [], False
        for line in text.splitlines():
            if line in servers:
                if not placed:
                    out.extend(f"    server {name} {addr} {options}" for name, addr in backends)
                    placed = True
                continue
            out.append(line.replace(bind, f"bind 127.0.0.1:{port}")
                       .replace(stats_bind, f"bind 127.0.0.1:{stats_port}"))
        return "\n".join(out) + "\n"
    return config


class HaProxy:
    """haproxy with config_text(backends), or with config=f(port, stats_port)
    returning another configuration whose proxy `backend` lists `backends`
    (tests/e2e/patroni.py: PostgreSQL primaries in TCP mode)."""

    def __init__(self, backends, workdir=None, port=None, config=None, backend="replicas"):
        if not Path(HAPROXY).exists():
            raise RuntimeError("haproxy not found (scripts/install-deps.sh test installs it)")
        self.root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sessiond-lb-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.stats_port = _free_port()
        self.cfg = self.root / "haproxy.cfg"
        self.log = self.root / "haproxy.log"
        text = config(self.port, self.stats_port) if config else config_text(self.port, self.stats_port, backends)
        self.cfg.write_text(text)
        self.names = [n for n, _ in backends]
        self.backend = backend
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=20, want=None):
        """Starts haproxy and waits for the backends to be `want` ({name:
        status}; default: every one UP)."""
        subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.cfg)], check=True)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf, cwd=str(self.root))
        logf.close()
        self.wait_states(want if want is not None else {n: "UP" for n in self.names}, timeout)
        return self

    def states(self, backend=None):
        """{server name: status} of `backend` (default: the one given at
        construction) from the stats CSV (UP, DOWN, 'UP 1/2', ...)."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"haproxy is not running:\n{self.log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == (backend or self.backend)}

    def wait_states(self, want, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            got = self.states()
            if all(got.get(k) == v for k, v in want.items()):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy backends {got}, want {want} within {timeout}s")
            time.sleep(0.1)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

"""A private Redis 7 for the end-to-end suite (tests/e2e/test_cache.py and
SESSIOND_TEST_CACHE=redis).

redis-server on a free loopback port, in a temporary directory, without
persistence (a cache: see docs/architecture.md, "The Redis cache"); stopped,
killed, paused (SIGSTOP) and resumed by PID. Commands go over a raw RESP
socket (no driver needed).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"


def enabled():
    return os.environ.get("SESSIOND_TEST_CACHE", "") == "redis"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")


def command(port, *args, password=None, timeout=5):
    """One command to the Redis (or Sentinel) on a loopback port; the reply,
    or RuntimeError for an error reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        if password:
            s.sendall(_encode(["AUTH", password]))
            _read_reply(f)
        s.sendall(_encode(args))
        return _read_reply(f)


def terminate(proc):
    """Stops a process this module started, by PID: SIGTERM (after SIGCONT,
    in case it is paused), SIGKILL if it outlives 10 s."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGCONT)
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


class RedisServer:
    def __init__(self, password=None, extra=()):
        if not os.path.exists(REDIS_BIN):
            raise RuntimeError(f"{REDIS_BIN} not found (scripts/install-deps.sh test installs redis-server)")
        self.dir = tempfile.mkdtemp(prefix="sessiond-redis-")
        self.port = _free_port()
        self.password = password
        self.extra = list(extra)  # more redis-server options, e.g. --replicaof
        self.proc = None
        self.start()

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self):
        assert self.proc is None
        cmd = [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
               "--logfile", os.path.join(self.dir, "redis.log")]
        if self.password:
            cmd += ["--requirepass", self.password]
        cmd += self.extra
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.cmd("PING") == "PONG":
                    return self
            except (OSError, ConnectionError, RuntimeError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = ""
                try:
                    log = open(os.path.join(self.dir, "redis.log")).read()[-2000:]
                except OSError:
                    pass
                self.kill()
                raise RuntimeError(f"redis-server did not start: {log}")
            time.sleep(0.05)

    def cmd(self, *args, timeout=5):
        return command(self.port, *args, password=self.password, timeout=timeout)

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self):
        """SIGKILL by PID: everything in memory is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self):
        terminate(self.proc)
        self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

"""A private Redis under Sentinel for tests/e2e/test_sentinel.py: a master
and a replica (redisserver.RedisServer, no persistence) and three
redis-sentinel processes watching them with a quorum of two, each on a free
loopback port in a temporary directory, each stopped by PID.

Short Sentinel timeouts (down-after-milliseconds 1000, failover-timeout
3000) so that a failover happens soon after the master dies; the tests wait
for what Sentinel reports, never for a duration. The replica accepts writes
of its own (replica-read-only no) so that a test can put a stale entry on it
on purpose, as a tombstone lost in replication would leave it. make chaos
(tests/e2e/chaos.py) also kills and restarts single Sentinels
(Sentinel.kill, start) and waits for the deployment to be whole again
(SentinelDeployment.healthy).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import redisserver

SENTINEL_BIN = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
MASTER_NAME = "sessiond-cache"


def available():
    return os.path.exists(SENTINEL_BIN) and os.path.exists(redisserver.REDIS_BIN)


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return
        except (OSError, ConnectionError, RuntimeError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Sentinel:
    """One redis-sentinel watching MASTER_NAME at master_port."""

    def __init__(self, master_port, password=None):
        self.dir = tempfile.mkdtemp(prefix="sessiond-sentinel-")
        self.port = redisserver._free_port()
        conf = os.path.join(self.dir, "sentinel.conf")  # Sentinel rewrites it
        lines = [f"port {self.port}", "bind 127.0.0.1", "daemonize no", f"dir {self.dir}",
                 f"logfile {os.path.join(self.dir, 'sentinel.log')}",
                 f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2",
                 f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                 f"sentinel failover-timeout {MASTER_NAME} 3000",
                 f"sentinel parallel-syncs {MASTER_NAME} 1"]
        if password:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {password}")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.conf = conf
        self.proc = None
        try:
            self.start()
        except RuntimeError:
            self.close()
            raise

    def start(self):
        """Starts (or, after kill(), restarts) redis-sentinel on its
        configuration file, which it has rewritten with what it learnt."""
        assert self.proc is None
        self.proc = subprocess.Popen([SENTINEL_BIN, self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: self.cmd("PING") == "PONG", 15, "redis-sentinel to answer")

    def kill(self):
        """SIGKILL by PID (make chaos); start() brings it back."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def cmd(self, *args, timeout=5):
        return redisserver.command(self.port, *args, timeout=timeout)

    def master_addr(self):
        r = self.cmd("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return (r[0].decode(), int(r[1])) if r else None

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "sentinel.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        redisserver.terminate(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelDeployment:
    """A master, a replica of it and three Sentinels, ready (the replica in
    sync, every Sentinel knowing the replica and the two other Sentinels)
    when the constructor returns. `nodes` are the two RedisServers, whose
    roles swap at a failover: `master()` is the one the Sentinels name."""

    def __init__(self, password=None):
        if not available():
            raise RuntimeError(f"{SENTINEL_BIN} not found (scripts/install-deps.sh test installs "
                               "redis-sentinel)")
        self.password = password
        self.nodes, self.sentinels = [], []
        try:
            auth = ["--masterauth", password] if password else []
            first = redisserver.RedisServer(password=password, extra=auth)
            self.nodes.append(first)
            self.nodes.append(redisserver.RedisServer(
                password=password,
                extra=auth + ["--replicaof", "127.0.0.1", str(first.port), "--replica-read-only", "no"]))
            _wait(lambda: b"master_link_status:up" in self.nodes[1].cmd("INFO", "replication"), 30,
                  "the replica in sync")
            for _ in range(3):
                self.sentinels.append(Sentinel(first.port, password))
            for s in self.sentinels:
                _wait(lambda: len(s.cmd("SENTINEL", "replicas", MASTER_NAME)) == 1
                      and len(s.cmd("SENTINEL", "sentinels", MASTER_NAME)) == 2, 60,
                      "every Sentinel to know the replica and the other Sentinels")
        except BaseException:
            self.close()
            raise

    def url(self, db=0):
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        return f"redis-sentinel://{auth}{hosts}/{MASTER_NAME}/{db}"

    def master_port(self):
        """The master's port as the first Sentinel that answers names it."""
        for s in self.sentinels:
            try:
                addr = s.master_addr()
                if addr:
                    return addr[1]
            except (OSError, ConnectionError, RuntimeError):
                continue
        return None

    def master(self):
        port = self.master_port()
        return next(n for n in self.nodes if n.port == port)

    def other(self, node):
        return next(n for n in self.nodes if n is not node)

    def healthy(self):
        """Back to full strength after a fault (make chaos): every Sentinel
        names the same running master and sees the other node as its replica
        and the two other Sentinels, none of them down, and the replica's
        link to the master is up."""
        def up(entries):
            return all(not {"s_down", "o_down", "disconnected"} & set(dict(zip(e[::2], e[1::2]))[b"flags"]
                                                                         .decode().split(","))
                       for e in entries)
        try:
            port = self.master_port()
            if port is None or not self.all_name(port) or any(n.proc is None for n in self.nodes):
                return False
            replica = next(n for n in self.nodes if n.port != port)
            info = replica.cmd("INFO", "replication")
            if b"master_link_status:up" not in info or f"master_port:{port}".encode() not in info:
                return False
            for s in self.sentinels:
                replicas, peers = s.cmd("SENTINEL", "replicas", MASTER_NAME), s.cmd("SENTINEL", "sentinels",
                                                                                    MASTER_NAME)
                if len(replicas) != 1 or len(peers) != 2 or not up(replicas) or not up(peers):
                    return False
            return True
        except (OSError, ConnectionError, RuntimeError, StopIteration):
            return False

    def all_name(self, port):
        """Every Sentinel names port as the master."""
        try:
            return all(s.master_addr() == ("127.0.0.1", port) for s in self.sentinels)
        except (OSError, ConnectionError, RuntimeError):
            return False

    def close(self):
        for s in self.sentinels:
            s.close()
        for n in self.nodes:
            n.close()
        self.sentinels, self.nodes = [], []

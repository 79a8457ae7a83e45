"""PostgreSQL 15 under Patroni for tests/e2e/test_patroni.py: a three-member
etcd cluster (Debian's etcd-server 3.4, v3 API) and a Patroni cluster (Debian's
patroni) of two PostgreSQL members in synchronous mode, a primary and a
synchronous standby. Every process listens on free loopback ports (etcd's
client and peer ports, each Patroni's REST API and its PostgreSQL) and keeps
its files in its own temporary directory; everything is stopped by PID.

Under root (CI), Patroni runs as the `postgres` user, as pgserver.py runs
PostgreSQL (it refuses root). Authentication is `trust` on loopback, as in
pgserver.py. Short Patroni timings (ttl 10 s, loop_wait 1 s) so that a
failover happens soon after the primary's node dies; the harness waits for
states Patroni and PostgreSQL report, never for a duration.

make chaos (tests/e2e/chaos.py) uses the same cluster with rejoin=True (a
former primary started again comes back as a standby) and kills and
restarts single etcd members (EtcdCluster.kill_member, start_member,
leader).

`haproxy_config` turns deploy/haproxy/patroni.cfg, the configuration
docs/deployment.md ships, into one for these members (loopback addresses;
every option as shipped).
"""

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from pgserver import PG_BIN, PSQL, _as_postgres, _free_port, crash_postmaster
from sentinelserver import _wait  # polls, ignoring OSError and RuntimeError meanwhile

ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"
PATRONI_BIN = shutil.which("patroni") or "/usr/bin/patroni"
HAPROXY_CFG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "patroni.cfg"
SCOPE = "sessiond-pg"


def available():
    """None when everything is installed, else why not."""
    for what, path in (("etcd", ETCD_BIN), ("patroni", PATRONI_BIN), ("PostgreSQL 15", PG_BIN / "postgres")):
        if not Path(path).exists():
            return f"{what} not found at {path} (scripts/install-deps.sh test installs it)"
    return None


def _http_status(url, timeout=2):
    """The status of GET url, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def _http_json(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _stop(proc, sig=signal.SIGTERM, timeout=60):
    """Stops a child by PID (sig, then SIGKILL after timeout seconds)."""
    if proc is None:
        return
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _gone(pid):
    """The process has exited (reaped, or a zombie nobody reaps yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


# -- etcd ----------------------------------------------------------------
class EtcdCluster:
    """Three etcd members bootstrapped together (static --initial-cluster);
    ready when every member reports itself healthy (the cluster has a
    leader)."""

    def __init__(self, n=3):
        self.root = Path(tempfile.mkdtemp(prefix="sessiond-etcd-"))
        self.members = [{"name": f"etcd{i}", "client": _free_port(), "peer": _free_port()} for i in range(n)]
        self.procs = [None] * n
        self.initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        try:
            for i in range(n):
                self.start_member(i, wait=False)
            for m in self.members:
                _wait(lambda: self._healthy(m), 60, f"etcd member {m['name']} healthy")
        except BaseException:
            self.close()
            raise

    def start_member(self, i, wait=True):
        """Starts member i (again, after kill_member: on its data directory,
        which makes etcd ignore the bootstrap flags and rejoin)."""
        assert self.procs[i] is None
        m = self.members[i]
        log = open(self.root / f"{m['name']}.log", "ab")
        self.procs[i] = subprocess.Popen(
            [ETCD_BIN, "--name", m["name"], "--data-dir", str(self.root / m["name"]),
             "--listen-client-urls", f"http://127.0.0.1:{m['client']}",
             "--advertise-client-urls", f"http://127.0.0.1:{m['client']}",
             "--listen-peer-urls", f"http://127.0.0.1:{m['peer']}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{m['peer']}",
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", self.root.name, "--logger", "zap"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.root))
        log.close()
        if wait:
            _wait(lambda: self._healthy(m), 60, f"etcd member {m['name']} healthy")

    def kill_member(self, i):
        """SIGKILL for member i by PID (make chaos)."""
        p, self.procs[i] = self.procs[i], None
        if p is not None:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()

    def leader(self):
        """The index of the member that is the Raft leader, as a running
        member reports it (v3 maintenance status), or None."""
        ids = {}
        for i, m in enumerate(self.members):
            if self.procs[i] is None:
                continue
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{m['client']}/v3/maintenance/status",
                                             data=b"{}", method="POST")
                with urllib.request.urlopen(req, timeout=2) as r:
                    st = json.loads(r.read())
            except (OSError, ValueError):
                continue
            ids[st["header"]["member_id"]] = i
            leader = st.get("leader")
        return ids.get(leader) if ids else None

    def healthy(self):
        """Every member running and healthy (the cluster has a leader)."""
        try:
            return all(p is not None for p in self.procs) and all(self._healthy(m) for m in self.members)
        except OSError:
            return False

    def _healthy(self, m):
        for p in self.procs:
            if p is not None and p.poll() is not None:
                raise AssertionError(f"etcd exited with {p.returncode}:\n{self.log_tail()}")
        try:
            return _http_json(f"http://127.0.0.1:{m['client']}/health").get("health") == "true"
        except ValueError:  # not JSON yet
            return False

    def hosts(self):
        return ",".join(f"127.0.0.1:{m['client']}" for m in self.members)

    def log_tail(self, n=2000):
        return "".join(p.read_text(errors="replace")[-n:] for p in sorted(self.root.glob("*.log")))

    def close(self):
        for p in self.procs:
            _stop(p)
        self.procs = []
        shutil.rmtree(self.root, ignore_errors=True)


# -- Patroni -------------------------------------------------------------
class Member:
    """One Patroni and the PostgreSQL it manages. With rejoin, a former
    primary started again after its node died comes back as a standby of
    the new one: pg_rewind (wal_log_hints is on under Patroni), or, when
    that fails, a new base backup."""

    def __init__(self, root, name, etcd_hosts, rejoin=False):
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.pg_port = _free_port()
        self.api_port = _free_port()
        self.data = self.dir / "data"
        self.log = self.dir / "patroni.log"
        self.conf = self.dir / "patroni.yml"
        self.proc = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        # JSON is YAML: no YAML writer needed.
        self.conf.write_text(json.dumps({
            "scope": SCOPE, "name": name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{self.api_port}", "connect_address": f"127.0.0.1:{self.api_port}"},
            "etcd3": {"hosts": etcd_hosts},
            "bootstrap": {
                "dcs": {
                    "ttl": 10, "loop_wait": 1, "retry_timeout": 4,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": True,
                    "postgresql": {"use_pg_rewind": rejoin, "use_slots": True,
                                   "parameters": {"max_connections": 300, "synchronous_commit": "on",
                                                  "fsync": "on", "full_page_writes": "on",
                                                  "shared_buffers": "64MB"}},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "no-sync"],
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                           "host replication all 127.0.0.1/32 trust"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": str(self.data),
                "bin_dir": str(PG_BIN),
                "pgpass": str(self.dir / "pgpass"),
                "authentication": {"superuser": {"username": "postgres"},
                                   "replication": {"username": "replicator"}},
                "parameters": {"unix_socket_directories": str(self.dir)},
                **({"use_pg_rewind": True, "remove_data_directory_on_rewind_failure": True,
                    "remove_data_directory_on_diverged_timelines": True} if rejoin else {}),
            },
        }, indent=1))
        if os.geteuid() == 0:
            os.chown(self.conf, pw.pw_uid, pw.pw_gid)

    def start(self):
        assert self.proc is None
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([PATRONI_BIN, str(self.conf)], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, cwd=str(self.dir), **_as_postgres())
        log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def api(self, path):
        """The status of GET path on this member's REST API (None: no answer)."""
        return _http_status(f"http://127.0.0.1:{self.api_port}{path}")

    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def psql(self, sql, db="postgres"):
        r = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-d", db,
                            "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"psql on {self.name} failed: {r.stderr.strip()}\nSQL: {sql}")
        return r.stdout

    def kill_node(self):
        """The node dies: SIGKILL for Patroni (it restarts nothing), then a
        crash of its PostgreSQL (pgserver.crash_postmaster). Returns once
        every one of those processes is gone."""
        pm = self.postmaster_pid()
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        if pm is not None and not _gone(pm):
            crash_postmaster(pm)
            _wait(lambda: _gone(pm), 60, f"the postmaster of {self.name} to exit")

    def stop(self):
        """Stops Patroni by PID (SIGTERM: it stops its PostgreSQL first); a
        PostgreSQL left behind (Patroni killed) is stopped by its PID too."""
        _stop(self.proc, timeout=90)
        self.proc = None
        pm = self.postmaster_pid()
        if pm is not None and not _gone(pm):
            try:
                os.kill(pm, signal.SIGQUIT)  # immediate shutdown
            except ProcessLookupError:
                return
            try:
                _wait(lambda: _gone(pm), 60, f"the postmaster of {self.name} to exit")
            except RuntimeError:
                crash_postmaster(pm)

    def log_tail(self, n=3000):
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class PatroniCluster:
    """etcd and two Patroni members; ready when one member is the primary
    (GET /primary 200), the other its synchronous standby (GET /sync 200),
    and the primary's pg_stat_replication shows it streaming as `sync`."""

    def __init__(self, members=2, timeout=180, rejoin=False):
        self.root = Path(tempfile.mkdtemp(prefix="sessiond-patroni-"))
        if os.geteuid() == 0:
            os.chmod(self.root, 0o755)
        self.etcd = None
        self.members = []
        try:
            self.etcd = EtcdCluster()
            self.members = [Member(self.root, f"pg{i}", self.etcd.hosts(), rejoin) for i in range(members)]
            for m in self.members:
                m.start()
            self.wait_sync(timeout)
        except BaseException as e:
            logs = self.log_tail()
            self.close()
            if isinstance(e, RuntimeError):
                raise RuntimeError(f"{e}\n{logs}") from None
            raise

    def _check_alive(self):
        for m in self.members:
            if m.proc is not None and m.proc.poll() is not None:
                raise AssertionError(f"patroni {m.name} exited with {m.proc.returncode}:\n{m.log_tail()}")

    def primary(self):
        """The member whose REST API answers GET /primary 200, or None."""
        self._check_alive()
        up = [m for m in self.members if m.running() and m.api("/primary") == 200]
        return up[0] if len(up) == 1 else None

    def sync_standby(self):
        up = [m for m in self.members if m.running() and m.api("/sync") == 200]
        return up[0] if len(up) == 1 else None

    def is_synchronous(self):
        p, s = self.primary(), self.sync_standby()
        if p is None or s is None or p is s:
            return False
        rows = p.psql("SELECT application_name, state, sync_state FROM pg_stat_replication").split()
        return f"{s.name}|streaming|sync" in rows

    def wait_sync(self, timeout=180):
        _wait(self.is_synchronous, timeout, "a Patroni primary with a synchronous standby streaming")

    def wait_primary(self, member, timeout=120):
        """Waits for `member` to be the primary and accept writes."""
        def ok():
            return (self.primary() is member
                    and member.psql("SELECT pg_is_in_recovery()").strip() == "f")
        _wait(ok, timeout, f"{member.name} to be promoted")

    def url(self, db, members=None):
        """A libpq multi-host URL naming every member, for the read-write one."""
        hosts = ",".join(f"127.0.0.1:{m.pg_port}" for m in (members or self.members))
        return f"postgresql://postgres@{hosts}/{db}?target_session_attrs=read-write"

    def log_tail(self):
        out = [f"--- patroni {m.name}:\n{m.log_tail()}" for m in self.members]
        if self.etcd:
            out.append(f"--- etcd:\n{self.etcd.log_tail(1000)}")
        return "\n".join(out)

    def close(self):
        for m in self.members:
            m.stop()
        self.members = []
        if self.etcd:
            self.etcd.close()
            self.etcd = None
        shutil.rmtree(self.root, ignore_errors=True)


# -- haproxy ---------------------------------------------------------------
def haproxy_config(members, text=None, sync_port=None):
    """deploy/haproxy/patroni.cfg (or text) for `members`: a function of
    (port, stats_port) for lbserver.HaProxy's config=. The primary's listener
    takes `port`, the synchronous standby's `sync_port` (a free one if None).
    Only the listening addresses and the server lines change (each section's
    server lines become one line per member, with that section's options); a
    template that no longer has them fails here rather than testing something
    else."""
    text = text if text is not None else HAPROXY_CFG.read_text()
    servers = [l for l in text.splitlines() if re.match(r"\s+server\s", l)]
    assert servers, f"no server lines in {HAPROXY_CFG}"
    for line in servers:
        assert re.search(r"\bcheck port \d+\b", line), f"a health check is not on Patroni's port: {line}"
    for what in ("bind *:5000", "bind 127.0.0.1:7000", "option httpchk GET /primary"):
        assert what in text, f"{HAPROXY_CFG} has no '{what}'"
    sync_port = sync_port or _free_port()

    def config(port, stats_port):
        out = text.replace("bind *:5000", f"bind 127.0.0.1:{port}")
        out = out.replace("bind *:5001", f"bind 127.0.0.1:{sync_port}")
        out = out.replace("bind 127.0.0.1:7000", f"bind 127.0.0.1:{stats_port}")
        lines, in_servers = [], False
        for line in out.splitlines():
            if line in servers:
                if not in_servers:  # the first of a section's server lines
                    options = re.sub(r"^\s*server\s+\S+\s+\S+\s*", "", line)
                    lines.extend(re.sub(r"check port \d+", f"check port {m.api_port}",
                                        f"    server {m.name} 127.0.0.1:{m.pg_port} {options}")
                                 for m in members)
                in_servers = True
                continue
            in_servers = False
            lines.append(line)
        return "\n".join(lines) + "\n"
    return config


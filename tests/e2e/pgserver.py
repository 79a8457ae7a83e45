"""A private PostgreSQL 15 for the end-to-end suite (SESSIOND_TEST_STORE=postgres).

One instance per test session: initdb in a temporary directory, postgres on
a free loopback port with fsync on, stopped by PID at the end. PostgreSQL
refuses to run as root, so under root (CI) initdb and postgres run as the
`postgres` system user the Debian package creates. Every sessiond the
harness starts gets its own database (CREATE DATABASE), named after its data
directory so a restart on the same directory finds its data again.

Reads for the tests go through psql (no driver needed).
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("SESSIOND_PG_BIN", "/usr/lib/postgresql/15/bin"))
PSQL = shutil.which("psql") or "/usr/bin/psql"


def enabled():
    return os.environ.get("SESSIOND_TEST_STORE", "sqlite") == "postgres"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres():
    """Popen keyword arguments that run a child as the postgres user when root."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def crash_postmaster(pid):
    """A machine crash: SIGKILL for the postmaster `pid` and every backend (a
    postmaster killed alone leaves its backends serving a while). The caller
    reaps the postmaster if it is its child."""
    os.kill(pid, signal.SIGSTOP)  # forks nothing more
    kids = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except (OSError, ValueError):
            continue
        if stat.rsplit(")", 1)[-1].split()[1] == str(pid):  # field 4: ppid
            kids.append(d.name)
    for k in kids:
        try:
            os.kill(int(k), signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(pid, signal.SIGKILL)


class PgServer:
    def __init__(self, standby_of=None):
        """A new cluster (initdb), or with standby_of=<PgServer> a streaming
        standby of that primary (pg_basebackup -R: standby.signal and
        primary_conninfo written for us)."""
        if not (PG_BIN / "postgres").exists():
            raise RuntimeError(f"PostgreSQL 15 not found in {PG_BIN} (scripts/install-deps.sh test installs it)")
        self.root = Path(tempfile.mkdtemp(prefix="sessiond-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self.log = self.root / "postgres.log"
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o755)
        self.port = _free_port()
        self.proc = None
        self.dbs = {}
        self._n = 0
        kw = _as_postgres()
        # --no-sync only skips initdb's final flush of the template files; the
        # server itself runs with fsync on.
        if standby_of is not None:
            subprocess.run([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(standby_of.port),
                            "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "-c", "fast"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(self.root), **kw)
        else:
            subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--no-sync", "--locale=C"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(self.root), **kw)
        self.start()

    # -- process ---------------------------------------------------------
    def start(self):
        assert self.proc is None
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sock}",
             "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on",
             "-c", "max_connections=300", "-c", "shared_buffers=64MB"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=str(self.root), **_as_postgres())
        logf.close()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"postgres exited with {rc}:\n{self.log.read_text(errors='replace')[-3000:]}")
            r = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                                "-Atc", "SELECT 1"], capture_output=True, text=True)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("postgres did not accept connections within 30s")
            time.sleep(0.1)

    def stop(self, sig=signal.SIGINT):
        """Stops by PID (SIGINT: fast shutdown; SIGKILL: crash)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def crash(self):
        """A machine crash (crash_postmaster)."""
        if self.proc is None:
            return
        crash_postmaster(self.proc.pid)
        self.proc.wait()
        self.proc = None

    def promote(self):
        """pg_ctl promote on a standby; returns once it accepts writes."""
        subprocess.run([str(PG_BIN / "pg_ctl"), "promote", "-w", "-D", str(self.data)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(self.root),
                       **_as_postgres())

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -------------------------------------------------------
    def psql(self, sql, db="postgres"):
        r = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                            "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"psql failed: {r.stderr.strip()}\nSQL: {sql}")
        return r.stdout

    def session(self, db):
        """An interactive psql on db that reads its statements from stdin (a
        transaction a test holds open: a row lock, say). The caller ends it
        (stdin closed, then wait)."""
        return subprocess.Popen([PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                                 "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def database_for(self, data_dir):
        """The database of the sessiond whose data directory is data_dir."""
        key = str(Path(data_dir).resolve())
        if key not in self.dbs:
            self._n += 1
            name = f"sd_{self._n}"
            self.psql(f"CREATE DATABASE {name}")
            self.dbs[key] = name
        return self.dbs[key]

    def url(self, db):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def query(self, data_dir, sql, params=()):
        """Runs SQLite-style SQL (? placeholders) on data_dir's database; rows of
        str/int/None."""
        db = self.dbs.get(str(Path(data_dir).resolve()))
        assert db, f"no database for {data_dir}"
        return self.query_db(db, sql, params)

    def query_db(self, db, sql, params=()):
        parts = sql.split("?")
        assert len(parts) == len(params) + 1, "placeholder count"
        text = parts[0]
        for p, rest in zip(params, parts[1:]):
            text += _literal(p) + rest
        out = self.psql(text, db)
        rows = []
        for line in out.splitlines():
            rows.append(tuple(_value(v) for v in line.split("\x1f")))
        return rows


def _literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def _value(s):
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        return s

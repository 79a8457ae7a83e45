"""make chaos (bench/chaos.py) and tests/e2e/test_chaos.py: the HA topology
of docs/deployment.md on one machine, a steady mixed load through it
(chaosload.py), and a scripted schedule that kills (SIGKILL) and restarts
one component at a time.

The topology, every process on 127.0.0.1 ports in temporary directories,
each stopped by PID in close() (also after a failure or Ctrl-C):
- PostgreSQL 15 under Patroni (patroni.py): a primary and a synchronous
  standby, a three-member etcd; a former primary rejoins as a standby
  (pg_rewind, or a new base backup);
- haproxy in front of it running deploy/haproxy/patroni.cfg (only its
  addresses replaced): the member whose Patroni answers GET /primary 200,
  and on a second port the one that answers GET /sync 200;
- Redis under Sentinel (sentinelserver.py): a master, a replica and three
  Sentinels, password-protected;
- three sessiond replicas (conftest.Server) with --store through that
  haproxy, --store-standby through its second port, --write-hold 15s
  (writes wait for a new primary; the clients' timeout is 20 s) and
  --cache redis-sentinel://, the password in
  SESSIOND_CACHE_PASSWORD;
- haproxy in front of the replicas running deploy/haproxy/sessiond.cfg
  (round-robin, checks on /readyz; only its addresses replaced), which the
  load goes through.

The faults, in this order, each started once the previous one's component
is back and the topology is whole again: a sessiond replica; the Redis
master (Sentinel promotes the replica; the old master is started again and
Sentinel makes it a replica); the PostgreSQL primary's node (its Patroni
and its PostgreSQL: Patroni promotes the synchronous standby once the
leader key expires; the old node is started again and rejoins as the
synchronous standby); a Sentinel; the etcd member that is the Raft leader.
Each is killed with SIGKILL and restarted a few seconds later (or once its
successor took over). The harness waits for states the components report,
never for a duration, except the few seconds a component stays dead.
"""

import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import chaosload
import chaosreport
import conftest
import lbserver
import patroni
import sentinelserver
from conftest import Server

DB = "sessiond"
FRONT_CFG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "sessiond.cfg"
DEAD_S = 5        # how long a killed component stays dead before it is started again
FAULTS = ("replica", "redis-master", "pg-primary", "sentinel", "etcd-leader")
RECOVERY_TIMEOUT = 300


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Topology:
    def __init__(self, replicas=3, log=print):
        self.log = log
        self.root = Path(tempfile.mkdtemp(prefix="sessiond-chaos-"))
        self.pg = self.pglb = self.redis = self.front = None
        self.replicas = []
        self.exit_codes = []      # of the replicas' SIGTERM at close (0: clean)
        self.password = "chaos-" + uuid.uuid4().hex[:12]
        try:
            self._start(replicas)
        except BaseException:
            self.close()
            raise

    def _start(self, n):
        why = patroni.available()
        if why:
            raise RuntimeError(why)
        self.log("starting etcd x3 and Patroni (primary + synchronous standby)...")
        self.pg = patroni.PatroniCluster(rejoin=True)
        self.pg.primary().psql(f"CREATE DATABASE {DB}")
        sync_port = patroni._free_port()
        self.pglb = lbserver.HaProxy([(m.name, f"127.0.0.1:{m.pg_port}") for m in self.pg.members],
                                     workdir=self.root / "haproxy-pg",
                                     config=patroni.haproxy_config(self.pg.members, sync_port=sync_port),
                                     backend="postgres_primary")
        self.pglb.start(timeout=60, want={self.pg.primary().name: "UP", self.pg.sync_standby().name: "DOWN"})
        self.log("starting Redis master + replica and 3 Sentinels...")
        self.redis = sentinelserver.SentinelDeployment(password=self.password)
        store = f"postgresql://postgres@127.0.0.1:{self.pglb.port}/{DB}?target_session_attrs=read-write"
        sentinels = ",".join(f"127.0.0.1:{s.port}" for s in self.redis.sentinels)
        cache = f"redis-sentinel://{sentinels}/{sentinelserver.MASTER_NAME}/0"
        standby = f"postgresql://postgres@127.0.0.1:{sync_port}/{DB}"
        args = ["--store", store, "--store-standby", standby, "--write-hold", "15s", "--cache", cache,
                "--failed-validation-rate", "0"]
        env = {"SESSIOND_CACHE_PASSWORD": self.password}
        self.log(f"starting {n} sessiond replicas ({conftest.SESSIOND_BIN}) and haproxy in front...")
        for i in range(n):
            self.replicas.append(Server(self.root / f"replica{i}", args, env=env).start())
        backends = [(f"r{i}", f"127.0.0.1:{s.port}") for i, s in enumerate(self.replicas)]
        self.front = lbserver.HaProxy(backends, workdir=self.root / "haproxy-front",
                                      config=lbserver.shipped_config(FRONT_CFG, backends))
        self.front.start(timeout=60)

    @property
    def port(self):
        return self.front.port

    def replica_ports(self):
        return [s.port for s in self.replicas]

    def whole(self):
        """Every component up: each replica ready in the front haproxy, a
        primary with its synchronous standby streaming and the PostgreSQL
        haproxy routing to it, Redis and every Sentinel at full strength,
        every etcd member healthy."""
        try:
            states = self.front.states()
            if any(states.get(f"r{i}") != "UP" for i in range(len(self.replicas))):
                return False
            if not (self.pg.etcd.healthy() and self.pg.is_synchronous() and self.redis.healthy()):
                return False
            p = self.pg.primary()
            return self.pglb.states().get(p.name) == "UP"
        except (OSError, RuntimeError):
            return False

    # -- faults: each returns [(event, monotonic time)] after the kill -------
    def fault(self, name):
        return getattr(self, "_f_" + name.replace("-", "_"))()

    def _f_replica(self):
        srv = self.replicas[1]
        srv.kill9()
        ev = [("killed", time.monotonic())]
        time.sleep(DEAD_S)
        srv.start()
        ev.append(("restarted", time.monotonic()))
        self.front.wait_states({"r1": "UP"}, timeout=RECOVERY_TIMEOUT)
        ev.append(("back in haproxy", time.monotonic()))
        return ev

    def _f_redis_master(self):
        old = self.redis.master()
        new = self.redis.other(old)
        old.kill()
        ev = [("killed", time.monotonic())]
        _wait(lambda: self.redis.all_name(new.port), RECOVERY_TIMEOUT, "Sentinel to promote the replica")
        ev.append(("replica promoted", time.monotonic()))
        time.sleep(DEAD_S)
        old.start()
        ev.append(("restarted", time.monotonic()))
        _wait(self.redis.healthy, RECOVERY_TIMEOUT, "the old master back as a replica")
        ev.append(("replica in sync", time.monotonic()))
        return ev

    def _f_pg_primary(self):
        old, new = self.pg.primary(), self.pg.sync_standby()
        old.kill_node()
        ev = [("killed", time.monotonic())]
        self.pg.wait_primary(new, timeout=RECOVERY_TIMEOUT)
        ev.append(("standby promoted", time.monotonic()))
        time.sleep(DEAD_S)
        old.start()
        ev.append(("restarted", time.monotonic()))
        self.pg.wait_sync(timeout=RECOVERY_TIMEOUT)
        ev.append(("old primary in sync", time.monotonic()))
        self.pglb.wait_states({new.name: "UP", old.name: "DOWN"}, timeout=RECOVERY_TIMEOUT)
        return ev

    def _f_sentinel(self):
        s = self.redis.sentinels[0]   # the one each replica asks first
        s.kill()
        ev = [("killed", time.monotonic())]
        time.sleep(DEAD_S)
        s.start()
        ev.append(("restarted", time.monotonic()))
        _wait(self.redis.healthy, RECOVERY_TIMEOUT, "the Sentinel back")
        ev.append(("back", time.monotonic()))
        return ev

    def _f_etcd_leader(self):
        i = self.pg.etcd.leader()
        i = 0 if i is None else i
        self.pg.etcd.kill_member(i)
        ev = [("killed", time.monotonic())]
        time.sleep(DEAD_S)
        self.pg.etcd.start_member(i, wait=False)
        ev.append(("restarted", time.monotonic()))
        _wait(self.pg.etcd.healthy, RECOVERY_TIMEOUT, "the etcd member back")
        ev.append(("healthy", time.monotonic()))
        return ev

    def log_tail(self):
        out = []
        for i, s in enumerate(self.replicas):
            out.append(f"--- sessiond r{i}:\n{s.log_text()[-1500:]}")
        if self.pg:
            out.append(self.pg.log_tail())
        return "\n".join(out)

    def save_logs(self, dest):
        """Copies every sessiond replica's log and both haproxy logs to dest."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(self.replicas):
            (dest / f"sessiond-r{i}.log").write_text(s.log_text())
        for name, lb in (("haproxy-front", self.front), ("haproxy-pg", self.pglb)):
            if lb and lb.log.exists():
                shutil.copy(lb.log, dest / f"{name}.log")
        if self.pg:
            for m in self.pg.members:
                (dest / f"patroni-{m.name}.log").write_text(m.log_tail(10 ** 7))

    def close(self):
        """Stops everything by PID, the load's entry point first."""
        errors = []

        def step(f):
            try:
                f()
            except BaseException as e:  # keep stopping the others  # noqa: B902
                errors.append(f"{type(e).__name__}: {e}")
        for lb in (self.front, self.pglb):
            if lb:
                step(lb.stop)
        for s in self.replicas:
            if s.running():
                step(lambda: self.exit_codes.append(s.stop(expect_rc=None)))
            step(s.kill9)
        for what in (self.redis, self.pg):
            if what:
                step(what.close)
        shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))


class Schedule(threading.Thread):
    """Runs the faults one at a time: fault k at offsets[k] seconds after
    t0 (or later, once the previous one has recovered and the topology is
    whole again). Records (name, [(event, time)]); an error stops it."""

    def __init__(self, topo, faults, offsets, t0, log=print):
        super().__init__(daemon=True)
        self.topo, self.faults, self.offsets, self.t0, self.log = topo, faults, offsets, t0, log
        self.done = []
        self.error = None
        self.halt = threading.Event()

    def run(self):
        try:
            for name, at in zip(self.faults, self.offsets):
                if self.halt.wait(max(0.0, self.t0 + at - time.monotonic())):
                    return
                _wait(self.topo.whole, RECOVERY_TIMEOUT, "the topology whole before the next fault")
                self.log(f"  {time.monotonic() - self.t0:6.1f}s  kill -9 {name}")
                t_begin = time.monotonic()
                ev = self.topo.fault(name)
                self.done.append((name, [("kill sent", t_begin)] + ev))
                self.log(f"  {time.monotonic() - self.t0:6.1f}s  {name} recovered: " +
                         ", ".join(f"{e} +{t - ev[0][1]:.1f}s" for e, t in ev[1:]))
        except BaseException as e:  # reported by the caller
            self.error = e


def offsets(seconds, n):
    """Fault k of n at (k + 1/2) / n of the run: spaced evenly."""
    return [seconds * (k + 0.5) / n for k in range(n)]


def run(seconds, rate, faults=FAULTS, workers=24, check_rate=100, timeout=20.0, seed=1, log=print, logs=None):
    """The whole run: topology, seeded sessions, load and schedule, then
    the checks. The load lasts `seconds`, or until the schedule has
    finished and 5 s more when a recovery runs past it. Returns
    chaosreport.summarize's dict (and 'error' when the schedule failed).
    Everything is stopped by PID before it returns or raises."""
    topo = Topology(log=log)
    ws, rev, sched, s = [], None, None, None
    try:
        rev = chaosload.Revocations(topo.replica_ports(), check_rate, timeout)
        results = []
        per = rate / workers
        cap = int(per * (seconds + 4 * RECOVERY_TIMEOUT)) + 100   # requests per worker, whatever happens
        ws = [chaosload.Worker(i, topo.port, per, float("inf"), rev, results, timeout, seed, cap)
              for i in range(workers)]
        log(f"seeding {20 * workers} sessions...")
        for w in ws:
            for _ in range(20):
                if w.create(record=False) != 201:
                    raise RuntimeError("a create failed before any fault")
        log(f"load: {rate} req/s for {seconds:.0f} s; faults: {', '.join(faults)}")
        t0 = time.monotonic()
        sched = Schedule(topo, faults, offsets(seconds, len(faults)), t0, log)
        rev.start()
        for w in ws:
            w.start()
        sched.start()
        time.sleep(seconds)
        sched.join(timeout=len(faults) * 2 * RECOVERY_TIMEOUT)
        now = time.monotonic()
        stop_at = t0 + seconds if now <= t0 + seconds else now + 5
        for w in ws:
            w.stop_at = stop_at
        for w in ws:
            w.join()
        t_end = max(stop_at, max((r[2] for r in results), default=stop_at))
        log(f"load stopped after {t_end - t0:.0f} s; checking every revoked token on every replica "
            "and reading back every live session...")
        error = sched.error
        if error is None:
            _wait(topo.whole, RECOVERY_TIMEOUT, "the topology whole for the final checks")
        unanswered = rev.finish()
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        verified = [None] * workers
        ts = [threading.Thread(target=lambda i=i: verified.__setitem__(i, ws[i].verify(topo.port, timeout, deadline)))
              for i in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        lost = [x for _, ls in verified for x in ls]
        acked = {"creates": sum(1 for r in results if r[0] == "create" and r[3]),
                 "updates": sum(1 for r in results if r[0] == "update" and r[3]),
                 "deletes": sum(1 for r in results if r[0] == "delete" and r[3]),
                 "read_back": sum(c for c, _ in verified)}
        acked["writes"] = acked["creates"] + acked["updates"] + acked["deletes"]
        s = chaosreport.summarize(results, t0, t_end, sched.done, lost, acked, list(rev.violations),
                                  len(rev.tokens), rev.checks, unanswered, sum(w.skipped for w in ws))
        if error is not None:
            s["error"] = f"{type(error).__name__}: {error}\n{topo.log_tail()}"
        return s
    finally:
        for w in ws:
            w.halt.set()
        if rev:
            rev.stop.set()
        if sched:
            sched.halt.set()
        if logs:
            topo.save_logs(logs)
        topo.close()
        if s is not None:
            s["exit_codes"] = topo.exit_codes

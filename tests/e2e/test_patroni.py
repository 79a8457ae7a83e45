"""PostgreSQL under Patroni: the primary's node dies under a create load,
Patroni promotes the synchronous standby, and sessiond resumes writes by
itself, losing nothing it acknowledged.

The cluster (patroni.py): three etcd members and two Patroni members of
PostgreSQL 15 in synchronous mode (a COMMIT returns only once the standby
has flushed it), all on loopback ports in temporary directories, stopped by
PID. Two sessiond replicas share one database on it, each reaching the
primary its own way, both as docs/deployment.md describes:
- `direct`: a libpq multi-host URL naming both members with
  target_session_attrs=read-write (libpq skips the standby);
- `via_lb`: one address, haproxy running deploy/haproxy/patroni.cfg (only
  its addresses replaced), which routes to the member whose Patroni answers
  GET /primary 200.

Before the kill, sessions are revoked (DELETE 204). Then the primary's node
dies (SIGKILL for its Patroni, then for its postmaster and every backend):
its leader key expires in etcd, the standby's Patroni takes it and promotes.
Afterwards every create either replica answered 201 (before, during or
after the failover) is in the new primary's table and validates, and every
revoked session is still refused. The time from the kill (once the node's
last process is gone) to each replica's first successful create sent after
it, and to the promotion, is printed, not asserted.
"""
import threading
import time

import pytest
import requests

import lbserver
import patroni
from conftest import new_user, record_token, wait_for

pytestmark = pytest.mark.no_prism("times the failover on sessiond's own answers")

DB = "sessiond"
BEFORE = 50      # creates acknowledged by each replica before the kill
AFTER = 50       # ... and after it (requests sent after the kill)
REVOKED = 10     # sessions each replica revokes before the kill
MAX_REQUESTS = 20000  # per load thread: the load is bounded whatever happens


@pytest.fixture
def cluster():
    why = patroni.available()
    if why:
        pytest.skip(why)
    c = patroni.PatroniCluster()
    try:
        c.primary().psql(f"CREATE DATABASE {DB}")
        yield c
    finally:
        c.close()


@pytest.fixture
def lb(cluster, tmp_path):
    """haproxy with the shipped configuration: the primary UP, the standby
    DOWN (its /primary answers 503)."""
    h = lbserver.HaProxy([(m.name, f"127.0.0.1:{m.pg_port}") for m in cluster.members],
                         workdir=tmp_path / "haproxy", config=patroni.haproxy_config(cluster.members),
                         backend="postgres_primary")
    try:
        h.start(timeout=60, want={cluster.primary().name: "UP", cluster.sync_standby().name: "DOWN"})
        yield h
    finally:
        h.stop()


class Load:
    """Two threads creating sessions on one replica until stopped (or
    MAX_REQUESTS each); every answer is kept with its send and receive time.
    A 503 is retried after 20 ms (pacing, not synchronisation)."""

    def __init__(self, srv):
        self.api = srv.api
        self.user = new_user("patroni")
        self.results = []  # (t_sent, t_done, status, body or None)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(2)]
        for t in self.threads:
            t.start()

    def _run(self):
        for _ in range(MAX_REQUESTS):
            if self.stop.is_set():
                return
            t0 = time.monotonic()
            try:
                r = self.api.request("POST", "/sessions", json={"userId": self.user})
                status, body = r.status_code, (r.json() if r.status_code == 201 else None)
            except requests.RequestException as e:
                status, body = f"{type(e).__name__}", None
            with self.lock:
                self.results.append((t0, time.monotonic(), status, body))
            if status != 201:
                time.sleep(0.02)

    def acked(self, sent_after=None):
        with self.lock:
            return [b for t0, _, s, b in self.results if s == 201 and (sent_after is None or t0 >= sent_after)]

    def first_success_after(self, t):
        with self.lock:
            done = [t1 for t0, t1, s, _ in self.results if s == 201 and t0 >= t]
        return min(done) - t if done else None

    def statuses(self):
        with self.lock:
            return {s for _, _, s, _ in self.results}

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def revoke_some(api):
    out = []
    for _ in range(REVOKED):
        s = api.create(new_user("patroni-revoked"))
        record_token(s["token"])
        api.delete(f"/sessions/{s['sessionId']}", expect=204)
        assert api.validate(s["token"], touch=False)["isValid"] is False
        out.append(s)
    return out


def test_primary_node_killed_under_create_load_loses_no_acknowledged_write(cluster, lb, make_server):
    old, new = cluster.primary(), cluster.sync_standby()
    opts = ("--max-sessions-per-user", "0")
    replicas = {
        "multi-host": make_server("--store", cluster.url(DB), *opts),
        "haproxy": make_server("--store", f"postgresql://postgres@127.0.0.1:{lb.port}/{DB}"
                                          "?target_session_attrs=read-write", *opts),
    }
    revoked = {name: revoke_some(srv.api) for name, srv in replicas.items()}
    loads = {name: Load(srv) for name, srv in replicas.items()}
    try:
        for name, load in loads.items():
            wait_for(lambda: len(load.acked()) >= BEFORE, timeout=120, what=f"creates acknowledged via {name}")
        old.kill_node()
        t_kill = time.monotonic()  # every process of the old primary's node is gone
        cluster.wait_primary(new, timeout=180)
        t_promoted = time.monotonic() - t_kill
        # Nobody touches sessiond or haproxy from here on.
        for name, load in loads.items():
            wait_for(lambda: len(load.acked(sent_after=t_kill)) >= AFTER, timeout=180,
                     what=f"creates acknowledged via {name} after the kill")
        lb.wait_states({new.name: "UP", old.name: "DOWN"}, timeout=60)
    finally:
        for load in loads.values():
            load.close()

    resumed = {name: load.first_success_after(t_kill) for name, load in loads.items()}
    print(f"\npatroni failover: {new.name} promoted {t_promoted:.2f}s after the kill of {old.name}; "
          "first successful create after the kill: "
          + ", ".join(f"{name} {t:.2f}s" for name, t in resumed.items()))

    acked = []
    for name, load in loads.items():
        assert load.statuses() <= {201, 503}, f"{name}: only 201 or 503, got {sorted(map(str, load.statuses()))}"
        acked += load.acked()
    for s in acked:
        record_token(s["token"])
    ids = {s["sessionId"] for s in acked}
    on_new = set(new.psql(f"SELECT id FROM sessions WHERE user_id IN "
                          f"({','.join(repr(load.user) for load in loads.values())})", db=DB).split())
    assert not ids - on_new, f"acknowledged creates missing on the new primary: {sorted(ids - on_new)[:5]}"
    for name, srv in replicas.items():
        srv.api.get("/readyz", expect=200)
        for s in acked:
            assert srv.api.validate(s["token"], touch=False)["isValid"] is True, \
                f"acknowledged {s['sessionId']} does not validate via {name}"
        for s in revoked["multi-host"] + revoked["haproxy"]:
            assert srv.api.validate(s["token"], touch=False)["isValid"] is False, \
                f"revoked {s['sessionId']} validates again via {name}"
    assert new.psql("SELECT pg_is_in_recovery()").strip() == "f"
    for srv in replicas.values():
        log = srv.log_text()
        assert "lost postgres" in log and "connected to postgres" in log

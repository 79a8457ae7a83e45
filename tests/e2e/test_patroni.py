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
import re
import threading
import time

import pytest
import requests

import lbserver
import patroni
import redisserver
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
    sync_port = patroni._free_port()
    h = lbserver.HaProxy([(m.name, f"127.0.0.1:{m.pg_port}") for m in cluster.members],
                         workdir=tmp_path / "haproxy",
                         config=patroni.haproxy_config(cluster.members, sync_port=sync_port),
                         backend="postgres_primary")
    h.sync_port = sync_port  # the listener for GET /sync's member (--store-standby)
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


def settled_validity(api, token, what):
    """isValid once the replica answers: each handler thread has its own
    connection to the store, and one the failover broke is found broken only
    by that thread's next query (a fence read answers 503 then rather than
    wait for a new connection; the next query makes one), so for a while
    some requests answer 503 (never a wrong answer): a session is asked
    until one answers."""
    def answer():
        r = api.post("/sessions/validate", headers={"Authorization": f"Bearer {token}"}, params={"touch": "false"})
        assert r.status_code in (200, 503), r.text
        return r if r.status_code == 200 else None
    return wait_for(answer, timeout=60, what=what).json()["isValid"]


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
    # Started means alive (/healthz); the store may still be connecting.
    for name, srv in replicas.items():
        wait_for(lambda: srv.api.request("GET", "/readyz").status_code == 200, timeout=60,
                 what=f"{name} ready")
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
            assert settled_validity(srv.api, s["token"], f"{name} answering for {s['sessionId']}") is True, \
                f"acknowledged {s['sessionId']} does not validate via {name}"
        for s in revoked["multi-host"] + revoked["haproxy"]:
            assert settled_validity(srv.api, s["token"], f"{name} answering for {s['sessionId']}") is False, \
                f"revoked {s['sessionId']} validates again via {name}"
    assert new.psql("SELECT pg_is_in_recovery()").strip() == "f"
    for srv in replicas.values():
        log = srv.log_text()
        assert "lost postgres" in log and "connected to postgres" in log


def _in_recovery(member):
    """True or False, or None when the member does not answer."""
    try:
        return member.psql("SELECT pg_is_in_recovery()").strip() == "t"
    except (OSError, RuntimeError, AssertionError):
        return None


def test_validations_the_cache_answers_go_on_while_patroni_promotes(cluster, lb, make_server):
    """--store-standby: while no member is the primary (the old one killed,
    the standby not yet promoted), a replica reads the cache epoch and the
    global not-before from the synchronous standby, so the sessions Redis
    holds keep validating; a replica without it cannot trust Redis once its
    last read of the epoch is FRESH_MS (250 ms) old, and answers 503. Revoked
    sessions never validate on either. /readyz stays 200 on the first (the
    standby answers), not on the second. What is counted is what sessiond
    answered in the rounds that started 1 s (4x FRESH_MS) or more after the
    kill and before which and after which the standby said
    pg_is_in_recovery() true."""
    old, new = cluster.primary(), cluster.sync_standby()
    rs = redisserver.RedisServer()
    try:
        store = f"postgresql://postgres@127.0.0.1:{lb.port}/{DB}?target_session_attrs=read-write"
        standby = f"postgresql://postgres@127.0.0.1:{lb.sync_port}/{DB}"
        common = ("--store", store, "--cache", rs.url())
        replicas = {"standby": make_server(*common, "--store-standby", standby),
                    "control": make_server(*common)}
        for name, srv in replicas.items():
            wait_for(lambda: srv.api.request("GET", "/readyz").status_code == 200, timeout=60,
                     what=f"{name} ready")
        live, revoked = {}, revoke_some(replicas["standby"].api)
        for name, srv in replicas.items():
            live[name] = []
            for _ in range(10):
                s = srv.api.create(new_user("patroni-cached"))
                record_token(s["token"])
                assert srv.api.validate(s["token"], touch=False)["isValid"] is True
                live[name].append(s)
        # The standby's listener routes to the synchronous standby.
        wait_for(lambda: lb.states("postgres_sync_standby").get(new.name) == "UP", timeout=60,
                 what="haproxy routing the sync listener to the synchronous standby")
        old.kill_node()
        t_kill = time.monotonic()
        seen = {name: {} for name in replicas}  # answer -> count, while no primary
        rounds = 0
        while _in_recovery(new) is not False and time.monotonic() - t_kill < 120:
            started = time.monotonic() - t_kill
            before = _in_recovery(new)
            answers = {name: [] for name in replicas}
            for name, srv in replicas.items():
                for s in live[name]:
                    r = srv.api.post("/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"},
                                     params={"touch": "false"})
                    answers[name].append(f"{r.status_code} {r.json().get('isValid')}" if r.status_code == 200
                                         else str(r.status_code))
                answers[name].append(f"readyz {srv.api.request('GET', '/readyz').status_code}")
                for s in revoked:
                    r = srv.api.post("/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"},
                                     params={"touch": "false"})
                    assert r.status_code in (200, 503), r.text
                    assert r.status_code == 503 or r.json()["isValid"] is False, \
                        f"revoked {s['sessionId']} validates via {name} during the failover"
            if started >= 1.0 and before and _in_recovery(new):
                rounds += 1
                for name, got in answers.items():
                    for a in got:
                        seen[name][a] = seen[name].get(a, 0) + 1
        cluster.wait_primary(new, timeout=180)
        print(f"\nvalidations of cached sessions while no primary ({rounds} rounds): {seen}")
        assert rounds > 0, "the standby was promoted within a second of the kill: nothing to count"
        assert set(seen["standby"]) <= {"200 True", "503", "readyz 200", "readyz 503"}, seen
        assert seen["standby"].get("200 True", 0) > 0, \
            f"no cached session validated through the standby's fence values: {seen}"
        # Ready while the standby answers: the front keeps it in rotation.
        assert seen["standby"].get("readyz 200", 0) > 0, seen
        assert seen["control"].get("503") == rounds * len(live["control"]) and "200 True" not in seen["control"], \
            f"without --store-standby a cache hit was trusted with no primary to read: {seen}"
        assert seen["control"].get("readyz 503", 0) > 0, seen
        log = replicas["standby"].log_text()
        assert "reading the fence values from the synchronous standby" in log
        metrics = replicas["standby"].api.get("/metrics").text
        reads = re.search(r"^sessiond_store_standby_reads_total (\d+)$", metrics, re.M)
        assert reads and int(reads.group(1)) > 0, metrics[-2000:]
        assert "sessiond_store_standby_reads_total" not in replicas["control"].api.get("/metrics").text
        # And after the promotion, everything validates through both.
        for name, srv in replicas.items():
            # (/readyz is 200 on the first already: a read of a row tells the primary is back.)
            wait_for(lambda: srv.api.request("GET", f"/sessions/{live[name][0]['sessionId']}").status_code == 200,
                     timeout=60, what=f"{name} reading the new primary")
            for s in live[name]:
                assert settled_validity(srv.api, s["token"], f"{name} answering for {s['sessionId']}") is True
            for s in revoked:
                assert settled_validity(srv.api, s["token"], f"{name} answering for {s['sessionId']}") is False
    finally:
        rs.close()

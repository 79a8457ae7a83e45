"""The Redis cache tier under Sentinel (--cache redis-sentinel://...) on a
private PostgreSQL 15 (pgserver.py) and a private Redis master, replica and
three Sentinels (sentinelserver.py), all started by this module on loopback
ports in temporary directories and stopped by PID.

What is proved: sessiond finds the master through Sentinel and serves
validation from it; when the master is killed, Sentinel promotes the replica
and sessiond follows it without a restart, failing no validation meanwhile;
and a failover never brings back a revoked session: a DELETE's tombstone
acknowledged by the master but never replicated (the replica stopped, then
the master killed, the stale entry put on the replica on purpose) does not
make the session valid again on any replica, including one started after the
failover, because every replica bumps the cache epoch before it uses a
master new to it (docs/architecture.md, "The Redis cache", failover).
Failover times are printed, not asserted.
"""
import threading
import time
import uuid

import pytest

import sentinelserver
from conftest import new_user, wait_for
from test_cache import hits, is_valid, metric, pgs, put_back, stale_copy, warm  # noqa: F401 (pgs: the fixture)

pytestmark = pytest.mark.no_prism("the test reads sessiond's own metrics")

SECRET = "sentinel-" + uuid.uuid4().hex[:8]


@pytest.fixture
def dep():
    """A fresh master, replica and three Sentinels per test (a failover
    changes them), the nodes password-protected."""
    if not sentinelserver.available():
        pytest.skip("redis-sentinel not installed (scripts/install-deps.sh test)")
    try:
        d = sentinelserver.SentinelDeployment(password=SECRET)
    except RuntimeError as e:
        pytest.skip(str(e))
    yield d
    d.close()


@pytest.fixture
def db(pgs):
    name = "sentinel_" + uuid.uuid4().hex[:10]
    pgs.psql(f"CREATE DATABASE {name}")
    return pgs.url(name)


def replica(make_server, db, dep):
    return make_server("--store", db, "--cache", dep.url())


def changes(srv):
    return metric(srv, "sessiond_cache_master_changes_total")


def fail_over(dep):
    """SIGKILL the master; returns (new master, seconds until every Sentinel
    named it)."""
    old = dep.master()
    new = dep.other(old)
    t0 = time.monotonic()
    old.kill()
    wait_for(lambda: dep.all_name(new.port), timeout=120, interval=0.05,
             what="Sentinel to promote the replica")
    return new, time.monotonic() - t0


def test_validation_is_served_from_the_master_sentinel_names(make_server, db, dep):
    a = replica(make_server, db, dep)
    b = replica(make_server, db, dep)
    master = dep.master()
    s = a.api.create(new_user("sentinel"))
    warm(a, master, s)
    warm(b, master, s)
    assert changes(a) == 1 and changes(b) == 1, "each replica adopted the master once, with a bump"
    wait_for(lambda: dep.other(master).cmd("GET", f"sessiond:s:{s['sessionId']}") is not None,
             timeout=30, what="the entry replicated")
    a.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    assert master.cmd("GET", f"sessiond:s:{s['sessionId']}") == b"x", "the tombstone is on the master"
    assert not is_valid(a.api, s["token"]) and not is_valid(b.api, s["token"])
    assert metric(a, "sessiond_cache_fences_total") == 0
    for srv in (a, b):
        srv.stop()
        assert SECRET not in srv.log_text(), "the Redis password is never logged"
        assert "new to this replica" in srv.log_text()
    # `sessiond check --connect` finds the same master through the Sentinels.
    from test_config import _run
    rc, out, err = _run(["check", "--connect", "--data-dir", str(a.data_dir), "--store", db, "--cache", dep.url(),
                         "--cache-timeout", "2s"], a.workdir)
    assert rc == 0 and f"cache redis 127.0.0.1:{master.port}/0: a master, as the Sentinels name it" in out, \
        (rc, out, err)
    assert SECRET not in out + err


def test_sessiond_follows_a_failover_and_keeps_validating(make_server, db, dep):
    a = replica(make_server, db, dep)
    b = replica(make_server, db, dep)
    user = new_user("sentinel")
    sessions = [a.api.create(user) for _ in range(6)]
    for srv in (a, b):
        warm(srv, dep.master(), sessions[0])
    failures, stop, counts = [], threading.Event(), [0]

    def load(srv):
        while not stop.is_set():
            for s in sessions:
                r = srv.api.request("POST", "/sessions/validate",
                                    headers={"Authorization": f"Bearer {s['token']}"}, params={"touch": "false"})
                counts[0] += 1
                if r.status_code != 200 or not r.json()["isValid"]:
                    failures.append(f"{srv.port}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=load, args=(srv,)) for srv in (a, b)]
    for t in threads:
        t.start()
    try:
        before = {srv.port: hits(srv) for srv in (a, b)}
        t0 = time.monotonic()
        new, promoted = fail_over(dep)
        # sessiond adopted the new master (the keeper asks Sentinel every
        # second) and serves from it again.
        for srv in (a, b):
            wait_for(lambda: changes(srv) >= 2, timeout=120, what="sessiond to adopt the new master")
        followed = time.monotonic() - t0
        for srv in (a, b):
            warm(srv, new, sessions[0])
            assert hits(srv) > before[srv.port]
        served = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"\nfailover: every Sentinel named the replica {promoted:.2f} s after the master's SIGKILL; "
          f"both replicas had adopted it at {followed:.2f} s, served hits from it at {served:.2f} s; "
          f"{counts[0]} validations under the failover")
    assert counts[0] > 0
    assert not failures, f"{len(failures)} failed validations during the failover, e.g. {failures[:5]}"
    assert "new to this replica" in a.log_text()
    # Writes go to the new master.
    gone = sessions[1]
    a.api.delete(f"/sessions/{gone['sessionId']}", expect=204)
    assert new.cmd("GET", f"sessiond:s:{gone['sessionId']}") == b"x"
    for srv in (a, b):
        assert not is_valid(srv.api, gone["token"])


def test_a_tombstone_lost_in_a_failover_never_brings_the_session_back(make_server, db, dep):
    """The lost tombstone: the master acknowledges a DELETE's tombstone while
    its replica is stopped (SIGSTOP: replication cannot have carried it),
    the master is SIGKILLed, the replica is given the revoked session's
    stale entries on purpose (as if the tombstone had never reached it; a
    tombstone that did reach its socket buffer is overwritten) and Sentinel
    promotes it. The new master holds the stale entry; no replica, not even
    one started afterwards, validates the session, while the cache serves
    the live ones again (fails without the epoch bump in sd_master_adopt)."""
    a = replica(make_server, db, dep)
    b = replica(make_server, db, dep)
    user = new_user("sentinel")
    gone, kept = a.api.create(user), a.api.create(user)
    old = dep.master()
    new = dep.other(old)
    for srv in (a, b):
        for s in (gone, kept):
            warm(srv, old, s)
    stale = stale_copy(old, gone)
    wait_for(lambda: all(new.cmd("GET", k) == v for k, v in stale), timeout=30,
             what="the stale entries replicated")

    new.pause()  # replication stops here
    try:
        a.api.delete(f"/sessions/{gone['sessionId']}", expect=204)
        assert old.cmd("GET", f"sessiond:s:{gone['sessionId']}") == b"x", "acknowledged by the master"
        old.kill()
    finally:
        new.resume()
    put_back(new, stale)
    assert new.cmd("GET", stale[0][0]) == stale[0][1], "the replica holds the revoked session's entry"

    def never_valid(servers):
        for srv in servers:
            assert not is_valid(srv.api, gone["token"]), f"revoked session validated on {srv.port}"

    wait_for(lambda: never_valid((a, b)) or dep.all_name(new.port), timeout=120, interval=0.05,
             what="Sentinel to promote the replica")
    for srv in (a, b):
        wait_for(lambda: never_valid((a, b)) or changes(srv) >= 2, timeout=120, interval=0.05,
                 what="sessiond to adopt the new master")
        warm(srv, new, kept)  # the cache serves from the new master
    c = replica(make_server, db, dep)  # a replica new since the failover
    warm(c, new, kept)
    put_back(new, stale)  # whatever happened meanwhile, the stale entry is there
    for _ in range(10):
        never_valid((a, b, c))
        for srv in (a, b, c):
            assert is_valid(srv.api, kept["token"])
    assert new.cmd("GET", stale[1][0]) == stale[1][1], "the new master still holds the stale entry"
    a.api.get(f"/sessions/{gone['sessionId']}", expect=404)

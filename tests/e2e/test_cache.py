"""The Redis cache tier (--cache redis://...) on a private PostgreSQL 15
(pgserver.py) and a private Redis 7 (redisserver.py), both started by this
module on loopback ports in temporary directories and stopped by PID.

What is proved: validation is served from the cache (hits counted); a DELETE
is honoured at once by every replica, and so are a user-wide revocation and
the eviction of a session by a create at --max-sessions-per-user (each
ended session tombstoned; past 1,024 in one write, a fence); a create fills
the cache with the new session (pre-warming); a revoked or evicted session never
validates again, on this replica or another sharing PostgreSQL and Redis,
even when Redis was paused or killed during the DELETE (or the evicting
create) and comes back holding the
stale entry (the stale entries are written back on purpose); while Redis is
down sessiond serves from PostgreSQL, stays ready and reports
sessiond_cache_degraded 1, then 0 once Redis is back; killing and restarting
Redis under a validation load fails no request and brings nothing revoked
back. The design is in docs/architecture.md, "The Redis cache".
"""
import contextlib
import re
import subprocess
import threading
import time
import uuid

import pytest

import pgserver
import redisserver
from conftest import new_user, record_token, wait_for

pytestmark = pytest.mark.no_prism("the test reads sessiond's own metrics and timing of replicas")


@pytest.fixture(scope="module")
def pgs():
    try:
        p = pgserver.PgServer()
    except RuntimeError as e:
        pytest.skip(str(e))
    yield p
    p.close()


@pytest.fixture(scope="module")
def rds():
    try:
        r = redisserver.RedisServer()
    except RuntimeError as e:
        pytest.skip(str(e))
    yield r
    r.close()


@pytest.fixture
def db(pgs, rds):
    """A fresh database per test; Redis running and empty."""
    if rds.proc is None:
        rds.start()
    rds.cmd("FLUSHALL")
    name = "cache_" + uuid.uuid4().hex[:10]
    pgs.psql(f"CREATE DATABASE {name}")
    return pgs.url(name)


def replica(make_server, db, rds, *args):
    return make_server("--store", db, "--cache", rds.url(), *args)


def metric(srv, name, labels=""):
    text = srv.api.get("/metrics", expect=200).text
    m = re.search(r"^" + re.escape(name + labels) + r" (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def is_valid(api, token):
    return api.validate(token, touch=False)["isValid"]


def hits(srv):
    return metric(srv, "sessiond_cache_requests_total", '{result="hit"}')


def warm(srv, rds, session, version=1):
    """Validates through srv until the session is in the cache and srv has
    hit it. (A replica counts no hit and fills nothing while its epoch is
    not fresh, e.g. when its keeper thread waits for a CPU: no timing is
    assumed, only that it catches up.)"""
    before = hits(srv)

    def cached():
        assert is_valid(srv.api, session["token"])
        index = rds.cmd("GET", f"sessiond:s:{session['sessionId']}") or b""
        return index.startswith(b"e|%d|" % version) and hits(srv) > before
    wait_for(cached, timeout=30, interval=0.02, what="the session served from the cache")


def stale_copy(rds, session):
    """The session's cache entries as they are now (to put back later)."""
    sid = session["sessionId"]
    index = rds.cmd("GET", f"sessiond:s:{sid}")
    assert index and index.startswith(b"e|"), f"no cache index for the session ({index!r})"
    tkey = "sessiond:t:" + index.decode().split("|")[2]
    entry = rds.cmd("GET", tkey)
    assert entry and sid.encode() in entry, "no cache entry for the session"
    return [(f"sessiond:s:{sid}", index), (tkey, entry)]


def put_back(rds, stale):
    for k, v in stale:
        rds.cmd("SET", k, v)


@contextlib.contextmanager
def redis_outage(rds, outage):
    """Redis "paused" (SIGSTOP: slower than any timeout, every call times
    out) or "killed" for the body, back (resumed or restarted) after it."""
    if outage == "paused":
        rds.pause()
    else:
        rds.kill()
    try:
        yield
    finally:
        if outage == "paused":
            rds.resume()
        else:
            rds.start()


def test_validation_is_served_from_the_cache_and_delete_is_immediate(make_server, db, rds):
    a = replica(make_server, db, rds)
    b = replica(make_server, db, rds)
    s = a.api.create(new_user("cache"))
    warm(a, rds, s)          # a miss fills the cache, then hits
    warm(b, rds, s)          # the other replica hits the same entry
    assert metric(a, "sessiond_cache_degraded") == 0
    (_, index), (tkey, entry) = stale_copy(rds, s)
    assert s["token"].encode() not in entry + index, "the cache holds the token's hash, never the token"
    ttl = rds.cmd("PTTL", tkey)
    assert 0 < ttl <= 3600 * 1000, f"the entry expires with the session (PTTL {ttl})"

    a.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    assert rds.cmd("GET", f"sessiond:s:{s['sessionId']}") == b"x", "a tombstone replaces the index"
    assert rds.cmd("GET", tkey) is None, "the entry is gone"
    assert not is_valid(a.api, s["token"]) and not is_valid(b.api, s["token"])
    assert metric(a, "sessiond_cache_fences_total") == 0, "Redis was up: no fence needed"


def test_validity_never_rests_on_the_cache_ttl(make_server, db, rds, clock):
    """Security checklist item 9: an entry Redis still holds past the
    session's expiry (its TTL removed here) does not make it valid: the
    expiry fields are checked with the server clock (moved past the expiry
    here, conftest.ShiftedClock, so no real second decides the answer)."""
    a = make_server("--store", db, "--cache", rds.url(), "--sweep-interval", "1h", env=clock.env)
    s = a.api.create(new_user("cache"), ttlSeconds=3600)
    warm(a, rds, s)
    for key, _ in stale_copy(rds, s):
        assert rds.cmd("PERSIST", key) == 1
    clock.advance(2 * 3600)
    assert not is_valid(a.api, s["token"])
    assert rds.cmd("EXISTS", stale_copy(rds, s)[1][0]) == 1, "the entry is still in Redis"


def test_update_and_rotation_go_through_to_the_cache(make_server, db, rds):
    a = replica(make_server, db, rds)
    b = replica(make_server, db, rds)
    s = a.api.create(new_user("cache"))
    warm(b, rds, s)
    a.api.put(f"/sessions/{s['sessionId']}", json={"data": {"k": 1}}, expect=200)
    # The update's write-through puts the row it committed (the 200 waits
    # for Redis to run it): version 2, over the old entry, whose version an
    # older read can no longer put back.
    (_, index), (_, entry) = stale_copy(rds, s)
    assert index.startswith(b"e|2|") and entry.startswith(b"e|2|"), (index, entry)
    before = hits(b)
    wait_for(lambda: is_valid(b.api, s["token"]) and hits(b) > before, timeout=30, interval=0.02,
             what="b hitting the entry the update put")
    assert b.api.get(f"/sessions/{s['sessionId']}").json()["data"] == {"k": 1}
    r = a.api.post(f"/sessions/{s['sessionId']}/refresh", headers={"Authorization": f"Bearer {s['token']}"},
                   expect=(200, 201))
    new = r.json()["token"]
    record_token(new)
    # The rotation puts the row with its new token hash; the old token's key goes.
    old_tkey = "sessiond:t:" + index.decode().split("|")[2]
    index = rds.cmd("GET", f"sessiond:s:{s['sessionId']}")
    assert index.startswith(b"e|") and old_tkey.split(":")[-1].encode() not in index, index
    assert rds.cmd("EXISTS", old_tkey) == 0
    assert is_valid(b.api, new)
    assert not is_valid(b.api, s["token"]), "the rotated-out token's cached entry is gone"


def test_token_reuse_on_validation_leaves_a_tombstone(make_server, db, rds):
    """A rotated-away token validated past --refresh-grace revokes the
    session (issue 15). The validation does not wait for that write; once it
    lands, its tombstone is in Redis and no replica serves the session's
    current token from the cache (fails without SD_W_REUSE in plan())."""
    a = replica(make_server, db, rds, "--refresh-grace", "0s")
    b = replica(make_server, db, rds, "--refresh-grace", "0s")
    s = a.api.create(new_user("cache"))
    sid = s["sessionId"]
    r = a.api.post(f"/sessions/{sid}/refresh", headers={"Authorization": f"Bearer {s['token']}"},
                   expect=200).json()
    record_token(r["token"])
    new = dict(s, token=r["token"])
    warm(b, rds, new, version=2)  # b serves the new token from the cache
    time.sleep(0.05)  # past the 0 s window (a lower bound only)
    assert not is_valid(a.api, s["token"])
    wait_for(lambda: rds.cmd("GET", f"sessiond:s:{sid}") == b"x", what="the tombstone of the revoked session")
    assert not is_valid(b.api, new["token"]) and not is_valid(a.api, new["token"])
    assert metric(a, "sessiond_cache_fences_total") == 0, "Redis was up: no fence needed"


def test_revoking_a_users_sessions_leaves_tombstones(make_server, db, rds):
    """The write path reports every session a user-wide revocation ended
    (issue 13), so each gets its tombstone, as a DELETE does; no fence."""
    a = replica(make_server, db, rds)
    b = replica(make_server, db, rds)
    user = new_user("cache")
    s1, s2 = a.api.create(user), a.api.create(user)
    for s in (s1, s2):
        warm(b, rds, s)
    assert a.api.delete(f"/users/{user}/sessions", expect=200).json()["deleted"] == 2
    for s in (s1, s2):
        assert rds.cmd("GET", f"sessiond:s:{s['sessionId']}") == b"x"
        assert not is_valid(a.api, s["token"]) and not is_valid(b.api, s["token"])
    assert metric(a, "sessiond_cache_fences_total") == 0, "Redis was up: no fence needed"


def test_revoking_a_large_accounts_sessions_is_fenced_through_the_epoch(make_server, db, rds):
    """Past 1,024 sessions ended by one write (MAX_TOMBSTONES in cache.c)
    the write is fenced instead of tombstoning each: no entry written before
    it is trusted, even one put back on purpose."""
    a = replica(make_server, db, rds, "--max-sessions-per-user", "0")
    b = replica(make_server, db, rds, "--max-sessions-per-user", "0")
    user = new_user("cache")
    s1 = a.api.create(user)
    for _ in range(1024):
        a.api.create(user)
    warm(b, rds, s1)
    stale = stale_copy(rds, s1)
    assert a.api.delete(f"/users/{user}/sessions", expect=200).json()["deleted"] == 1025
    assert metric(a, "sessiond_cache_fences_total") >= 1
    put_back(rds, stale)  # even with the entries still there
    for srv in (a, b):
        assert not is_valid(srv.api, s1["token"])


def test_a_new_session_is_cached_by_its_create(make_server, db, rds):
    """Pre-warming (the article's login spikes): the create's write-through
    fills the cache, so the first validation on any replica can be a hit
    instead of a miss every replica repeats. The fill is best effort and the
    201 does not wait for Redis' answer, so the test waits for the entry to
    appear, with no validation in between."""
    a = replica(make_server, db, rds)
    b = replica(make_server, db, rds)
    s = a.api.create(new_user("cache"))
    wait_for(lambda: (rds.cmd("GET", f"sessiond:s:{s['sessionId']}") or b"").startswith(b"e|1|"),
             what="the cache entry the create filled")
    warm(b, rds, s)


def test_bulk_revocation_by_id_leaves_tombstones(make_server, db, rds):
    a = replica(make_server, db, rds)
    b = replica(make_server, db, rds)
    s1, s2 = a.api.create(new_user("cache")), a.api.create(new_user("cache"))
    for s in (s1, s2):
        warm(b, rds, s)
    r = a.api.post("/sessions/bulk-delete", json={"sessionIds": [s1["sessionId"], s2["sessionId"]]}, expect=200)
    assert r.json()["deleted"] == 2
    for s in (s1, s2):
        assert rds.cmd("GET", f"sessiond:s:{s['sessionId']}") == b"x"
        assert not is_valid(a.api, s["token"]) and not is_valid(b.api, s["token"])
    assert metric(a, "sessiond_cache_fences_total") == 0


def test_a_session_evicted_by_the_cap_is_invalid_at_once_on_every_replica(make_server, db, rds):
    """Issue 13: a create that evicts a session (--max-sessions-per-user)
    ends it as a DELETE does: its tombstone is in Redis before the 201, so
    no replica serves it from the cache (it did until its entry expired)."""
    a = replica(make_server, db, rds, "--max-sessions-per-user", "1")
    b = replica(make_server, db, rds, "--max-sessions-per-user", "1")
    user = new_user("cache")
    first = a.api.create(user)
    for srv in (a, b):
        warm(srv, rds, first)
    (_, _), (tkey, _) = stale_copy(rds, first)
    second = b.api.create(user)  # evicts the first, on the other replica
    for srv in (a, b):
        assert not is_valid(srv.api, first["token"]), f"evicted session validated on {srv.port}"
        assert is_valid(srv.api, second["token"])
    assert rds.cmd("GET", f"sessiond:s:{first['sessionId']}") == b"x", "a tombstone replaces the index"
    assert rds.cmd("GET", tkey) is None, "the entry is gone"
    a.api.get(f"/sessions/{first['sessionId']}", expect=404)
    assert metric(b, "sessiond_cache_fences_total") == 0, "Redis was up: no fence needed"


@pytest.mark.parametrize("outage", ["paused", "killed"])
def test_eviction_during_a_redis_outage_never_validates_again(make_server, db, rds, outage):
    """An eviction while Redis cannot be reached is fenced as a DELETE is:
    when Redis comes back holding the evicted session's entry (put back on
    purpose), no replica serves it, once the cache serves again."""
    a = replica(make_server, db, rds, "--max-sessions-per-user", "1")
    b = replica(make_server, db, rds, "--max-sessions-per-user", "1")
    user = new_user("cache")
    gone, kept = a.api.create(user), a.api.create(new_user("cache"))
    for srv in (a, b):
        for s in (gone, kept):
            warm(srv, rds, s)
    stale = stale_copy(rds, gone)

    with redis_outage(rds, outage):
        newer = a.api.create(user)  # evicts gone
        for srv in (a, b):
            assert not is_valid(srv.api, gone["token"]) and is_valid(srv.api, newer["token"])
    put_back(rds, stale)
    wait_for(lambda: metric(b, "sessiond_cache_degraded") == 0 and metric(a, "sessiond_cache_degraded") == 0,
             timeout=20, what="cache no longer degraded")
    for srv in (a, b):
        warm(srv, rds, kept)  # the cache serves again
    for _ in range(10):
        for srv in (a, b):
            assert not is_valid(srv.api, gone["token"]), f"evicted session validated on {srv.port}"
            assert is_valid(srv.api, kept["token"]) and is_valid(srv.api, newer["token"])
    assert metric(a, "sessiond_cache_fences_total") >= 1, "the failed invalidation was fenced"


@pytest.mark.parametrize("outage", ["paused", "killed"])
def test_delete_during_a_redis_outage_never_validates_again(make_server, db, rds, outage):
    a = replica(make_server, db, rds)
    b = replica(make_server, db, rds)
    user = new_user("cache")
    gone, kept = a.api.create(user), a.api.create(user)
    for srv in (a, b):
        for s in (gone, kept):
            warm(srv, rds, s)
    stale = stale_copy(rds, gone)

    with redis_outage(rds, outage):
        a.api.delete(f"/sessions/{gone['sessionId']}", expect=204)
        assert not is_valid(a.api, gone["token"]) and not is_valid(b.api, gone["token"])
        assert is_valid(a.api, kept["token"]) and is_valid(b.api, kept["token"])
        a.api.get("/readyz", expect=200)
    # Redis is back and holds the revoked session's entry, as it was before
    # the DELETE (a paused Redis may also run the late tombstone: put the
    # stale entry back over it either way).
    put_back(rds, stale)
    assert metric(a, "sessiond_cache_fences_total") >= 1
    for _ in range(10):
        for srv in (a, b):
            assert not is_valid(srv.api, gone["token"]), f"revoked session validated on {srv.port}"
            assert is_valid(srv.api, kept["token"])
    # The cache serves again (new entries under the new epoch).
    wait_for(lambda: metric(b, "sessiond_cache_degraded") == 0 and metric(a, "sessiond_cache_degraded") == 0,
             timeout=20, what="cache no longer degraded")
    warm(b, rds, kept)
    assert "requirepass" not in a.log_text()


def test_redis_down_degrades_to_postgres_and_recovers(make_server, db, rds):
    a = replica(make_server, db, rds)
    s = a.api.create(new_user("cache"))
    warm(a, rds, s)
    rds.kill()
    try:
        def degraded():
            assert is_valid(a.api, s["token"]), "validation keeps working from PostgreSQL"
            return metric(a, "sessiond_cache_degraded") == 1
        wait_for(degraded, timeout=20, what="sessiond_cache_degraded 1")
        a.api.get("/readyz", expect=200)
        assert metric(a, "sessiond_ready") == 1
        assert metric(a, "sessiond_cache_errors_total") >= 1
        created = a.api.create(new_user("cache"))   # writes do not need Redis
        assert is_valid(a.api, created["token"])
        assert "degraded" in a.log_text()
    finally:
        rds.start()
    wait_for(lambda: metric(a, "sessiond_cache_degraded") == 0, timeout=20,
             what="sessiond_cache_degraded back to 0 once Redis is back")
    assert "is back" in a.log_text()


def test_redis_killed_and_restarted_under_load(make_server, db, rds):
    a = replica(make_server, db, rds)
    b = replica(make_server, db, rds)
    user = new_user("load")
    sessions = [a.api.create(user) for _ in range(12)]
    revoked = sessions[:4]
    live = sessions[4:]
    failures, revoked_done = [], set()
    stop = threading.Event()
    counts = [0]

    def load(srv):
        while not stop.is_set():
            for s in sessions:
                was_revoked = s["sessionId"] in revoked_done   # DELETE returned before this request
                r = srv.api.request("POST", "/sessions/validate",
                                    headers={"Authorization": f"Bearer {s['token']}"}, params={"touch": "false"})
                counts[0] += 1
                if r.status_code != 200:
                    failures.append(f"{srv.port}: {r.status_code} {r.text[:200]}")
                elif was_revoked and r.json()["isValid"]:
                    failures.append(f"{srv.port}: revoked {s['sessionId']} validated")
                elif s in live and not r.json()["isValid"]:
                    failures.append(f"{srv.port}: live {s['sessionId']} invalid")

    threads = [threading.Thread(target=load, args=(srv,)) for srv in (a, b, a, b)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        rds.kill()
        a.api.delete(f"/sessions/{revoked[0]['sessionId']}", expect=204)
        revoked_done.add(revoked[0]["sessionId"])
        time.sleep(1)
        rds.start()
        a.api.delete(f"/sessions/{revoked[1]['sessionId']}", expect=204)
        revoked_done.add(revoked[1]["sessionId"])
        time.sleep(1)
        rds.kill()
        b.api.delete(f"/sessions/{revoked[2]['sessionId']}", expect=204)
        revoked_done.add(revoked[2]["sessionId"])
        rds.start()
        b.api.delete(f"/sessions/{revoked[3]['sessionId']}", expect=204)
        revoked_done.add(revoked[3]["sessionId"])
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert counts[0] > 0
    assert not failures, f"{len(failures)} failed requests under the Redis restarts, e.g. {failures[:5]}"
    for srv in (a, b):
        for s in revoked:
            assert not is_valid(srv.api, s["token"])
        for s in live:
            assert is_valid(srv.api, s["token"])


def test_cache_options_and_secrets(make_server, db, rds):
    # --cache needs a shared store.
    srv = make_server("--cache", rds.url(), start=False)
    cmd = srv.command()
    if "--store" in cmd:  # SESSIOND_TEST_STORE=postgres adds one
        i = cmd.index("--store")
        del cmd[i:i + 2]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--cache needs a shared store" in r.stderr

    # A password-protected Redis: the password in the URL authenticates and
    # is never logged; a wrong one leaves sessiond serving, degraded.
    secret = "s3cret-" + uuid.uuid4().hex[:8]
    locked = redisserver.RedisServer(password=secret)
    try:
        url = f"redis://:{secret}@127.0.0.1:{locked.port}/2"
        a = make_server("--store", db, "--cache", url)
        s = a.api.create(new_user("cache"))
        wait_for(lambda: is_valid(a.api, s["token"]) and hits(a) >= 1, timeout=30, interval=0.02,
                 what="hits on a password-protected Redis")
        assert b"db2:keys=" in locked.cmd("INFO", "keyspace"), "the URL's database number is used"
        w = make_server("--store", db, "--cache", f"redis://127.0.0.1:{locked.port}",
                        "--cache-password", "wrong-" + secret)
        wait_for(lambda: is_valid(w.api, s["token"]) and metric(w, "sessiond_cache_degraded") == 1,
                 timeout=20, what="degraded with a wrong password")
        for srv in (a, w):
            srv.stop()
            assert secret not in srv.log_text(), "the Redis password is never logged"
    finally:
        locked.close()


def test_a_replica_started_while_postgres_is_down_trusts_no_cached_entry(pgs, rds, db, make_server):
    """A replica that starts during a database outage has never read the
    cache epoch, so it must not answer from Redis (it cannot know what was
    revoked meanwhile): validation is 503 even though Redis holds a valid
    entry. Once PostgreSQL is back it reads the epoch and serves, without a
    restart."""
    a = replica(make_server, db, rds)
    s = a.api.create(new_user("cache"))
    record_token(s["token"])
    warm(a, rds, s)
    pgs.stop()
    try:
        b = replica(make_server, db, rds)
        b.api.get("/readyz", expect=503)
        r = b.api.post("/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"},
                       params={"touch": "false"}, expect=503)
        assert r.headers.get("Retry-After")
        assert metric(b, "sessiond_cache_requests_total", '{result="hit"}') == 0
    finally:
        pgs.start()
    wait_for(lambda: b.api.get("/readyz").status_code == 200, timeout=30,
             what="the replica ready once postgres answers")
    wait_for(lambda: is_valid(b.api, s["token"]), timeout=10, what="validation through b")

"""The write path's conformance suite (issue 13): every kind of write, its
audit events, and what every replica sees after it, run unchanged against
each backend: the embedded store (make e2e), PostgreSQL (make e2e-postgres)
and PostgreSQL with the Redis cache tier (make e2e-cache).

On PostgreSQL each test runs two replicas on one database (in cache mode on
one Redis too): the write goes through `a`, and `b`, which validated the
session before the write (in cache mode: from the cache), must see its
outcome at once. The embedded store has one server: `b` is `a`.

What a write means is decided once (src/session/write.c); these tests hold
every backend and the cache to it, the eviction-through-cache defect of
issue 13 (an evicted session kept validating from Redis) and a cap lowered
by more than 16 among them.
"""
import re
import threading
import time

import pytest

from conftest import CACHE_MODE, PG_MODE, new_user, pg, record_token, redis, wait_for

pytestmark = pytest.mark.no_prism("reads the audit events of several replicas")


def replicas(make_server, *args, grace="0s", env=None):
    """(a, b): two replicas of one store, or the one embedded server twice."""
    args = ("--refresh-grace", grace, "--sweep-interval", "1h", *args)
    a = make_server(*args, env=env)
    if not PG_MODE:
        return a, a
    store = ["--store", pg().url(pg().database_for(a.data_dir))]
    if CACHE_MODE:
        store += ["--cache", redis().url()]
    b = make_server(*args, *store, env=env)
    return a, b


def valid(srv, token):
    return srv.api.validate(token, touch=False)["isValid"]


def seen(srv, s):
    """srv validated s (in cache mode the validation fills the cache)."""
    assert valid(srv, s["token"]) and valid(srv, s["token"])


def events(srv, sid):
    return [e["event"] for e in srv.api.get(f"/sessions/{sid}/events", expect=200).json()["events"]]


def test_create(make_server):
    a, b = replicas(make_server)
    s = a.api.create(new_user("wc"))
    assert valid(b, s["token"])
    assert events(b, s["sessionId"]) == ["created"]


def test_update_with_if_match(make_server):
    a, b = replicas(make_server)
    s = a.api.create(new_user("wc"))
    seen(b, s)
    sid = s["sessionId"]
    before = b.api.validate(s["token"], touch=False)["expiry"]
    r = a.api.put(f"/sessions/{sid}", json={"data": {"k": 1}, "ttlSeconds": 120}, headers={"If-Match": '"1"'},
                  expect=200).json()
    assert r["version"] == 2 and r["expiry"] != before
    a.api.put(f"/sessions/{sid}", json={"data": {"k": 2}}, headers={"If-Match": '"1"'}, expect=412)
    assert b.api.get_session(sid).json()["version"] == 2
    assert b.api.validate(s["token"], touch=False)["expiry"] == r["expiry"]
    assert events(b, sid) == ["created", "updated"]


def test_refresh_rotates_and_a_reuse_ends_the_session(make_server):
    a, b = replicas(make_server)
    s = a.api.create(new_user("wc"))
    seen(b, s)
    sid = s["sessionId"]
    new = a.api.post(f"/sessions/{sid}/refresh", headers={"Authorization": f"Bearer {s['token']}"},
                     expect=200).json()["token"]
    record_token(new)
    assert valid(b, new)
    time.sleep(0.05)  # past the 0 s grace window (a lower bound only)
    a.api.post(f"/sessions/{sid}/refresh", headers={"Authorization": f"Bearer {s['token']}"}, expect=401)
    assert not valid(b, new) and not valid(a, new)
    assert events(b, sid) == ["created", "refreshed", "token_reuse_detected", "revoked"]


def test_renewal_on_raised_privilege(make_server):
    # A window no run outlasts: the retired token is presented below, and
    # past the window that would end the session (test_rotation.py).
    a, b = replicas(make_server, grace="1h")
    s = a.api.create(new_user("wc"))
    seen(b, s)
    sid = s["sessionId"]
    new = a.api.put(f"/sessions/{sid}", json={"mfa": True}, expect=200).json()["token"]
    record_token(new)
    assert not valid(b, s["token"]) and valid(b, new)
    assert events(b, sid) == ["created", "updated", "renewed"]


def test_delete(make_server):
    a, b = replicas(make_server)
    s = a.api.create(new_user("wc"))
    seen(b, s)
    a.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    assert not valid(b, s["token"])
    a.api.delete(f"/sessions/{s['sessionId']}", expect=404)
    assert events(b, s["sessionId"]) == ["created", "revoked"]


def test_delete_with_preconditions(make_server):
    """DELETE with If-Match / If-None-Match is decided by the writer on the
    row it ends: a failed one ends nothing (412 with the current ETag, no
    event, still valid on every replica), a holding one ends it."""
    a, b = replicas(make_server)
    s = a.api.create(new_user("wc"))
    seen(b, s)
    sid = s["sessionId"]
    a.api.put(f"/sessions/{sid}", json={"data": {"k": 1}}, headers={"If-Match": '"1"'}, expect=200)
    for h in ({"If-Match": '"1"'}, {"If-None-Match": '"2"'}, {"If-None-Match": "*"}):
        r = a.api.delete(f"/sessions/{sid}", headers=h, expect=412)
        assert r.headers.get("ETag") == '"2"', (h, r.headers)
        assert valid(b, s["token"]) and valid(a, s["token"]), h
    a.api.delete(f"/sessions/{sid}", headers={"If-Match": '"1", "2"', "If-None-Match": '"1"'}, expect=204)
    assert not valid(b, s["token"])
    a.api.delete(f"/sessions/{sid}", headers={"If-Match": '"2"'}, expect=404)
    assert events(b, sid) == ["created", "updated", "revoked"]


def test_revoke_a_users_sessions_but_one(make_server):
    a, b = replicas(make_server)
    user = new_user("wc")
    s1, s2, s3 = (a.api.create(user) for _ in range(3))
    for s in (s1, s2, s3):
        seen(b, s)
    r = a.api.delete(f"/users/{user}/sessions", params={"except": s2["sessionId"]}, expect=200)
    assert r.json()["deleted"] == 2
    assert not valid(b, s1["token"]) and valid(b, s2["token"]) and not valid(b, s3["token"])
    assert events(b, s1["sessionId"]) == ["created", "revoked"]


def test_bulk_revocation_by_id_and_by_user(make_server):
    a, b = replicas(make_server)
    user = new_user("wc")
    by_id, by_user1, by_user2, kept = (a.api.create(new_user("wc")), a.api.create(user),
                                       a.api.create(user), a.api.create(new_user("wc")))
    for s in (by_id, by_user1, by_user2, kept):
        seen(b, s)
    r = a.api.post("/sessions/bulk-delete", json={"sessionIds": [by_id["sessionId"]], "userIds": [user]},
                   expect=200)
    assert r.json()["deleted"] == 3
    for s in (by_id, by_user1, by_user2):
        assert not valid(b, s["token"]) and not valid(a, s["token"])
    assert valid(b, kept["token"])


def test_eviction_at_a_cap_lowered_by_more_than_16(make_server):
    """20 sessions made under no cap; a replica with a cap of 2 creates one:
    19 end (evicted), on every replica at once, the cache included."""
    a, _ = replicas(make_server, "--max-sessions-per-user", "0")
    user = new_user("wc")
    old = [a.api.create(user) for _ in range(20)]
    if PG_MODE:
        store = ["--store", pg().url(pg().database_for(a.data_dir))]
        store += ["--cache", redis().url()] if CACHE_MODE else []
        b = make_server("--max-sessions-per-user", "2", *store)
    else:
        a.stop()
        a.args = [*a.args, "--max-sessions-per-user", "2"]  # the last occurrence wins
        a.start()
        b = a
    for s in old:
        seen(a, s)
    new = b.api.create(user)
    # The least recently seen end; which of two created in one millisecond
    # is older is for the id to decide, so only the count is asserted.
    alive = [s for s in old if valid(a, s["token"])]
    assert len(alive) == 1
    for s in old:
        if s is alive[0]:
            continue
        assert not valid(b, s["token"])
        assert events(b, s["sessionId"]) == ["created", "evicted"]
    assert valid(a, new["token"]) and valid(b, new["token"])
    assert len(b.api.list_user(user).json()["sessions"]) == 2


def test_refused_at_the_cap_changes_nothing(make_server):
    a, b = replicas(make_server, "--max-sessions-per-user", "1", "--session-limit-policy", "reject")
    user = new_user("wc")
    s = a.api.create(user)
    seen(b, s)
    a.api.post("/sessions", json={"userId": user}, expect=429)
    assert valid(b, s["token"])
    assert events(b, s["sessionId"]) == ["created"]



class Gate:
    """The writer's gate (store/fault.h, the sanitizer build): while its
    file exists the writer takes no batch, so the writes sent meanwhile run
    as one batch, in the order they were queued, once it is opened."""

    def __init__(self, tmp_path):
        self.path = tmp_path / "writer-gate"
        self.env = {"SESSIOND_WRITER_GATE": str(self.path)}

    def check(self, srv):
        if "SESSIOND_WRITER_GATE" not in srv.log_text():
            pytest.skip("the release build has no writer gate (the sanitizer build does)")

    def close(self):
        self.path.write_text("")

    def open(self):
        self.path.unlink()


def queued(srv):
    m = re.search(r"^sessiond_store_writes_queued (\d+)$", srv.api.get("/metrics").text, re.M)
    return int(m.group(1))


def in_one_batch(gate, srv, *calls):
    """Runs each call on a thread of its own, queued in this order while the
    gate is closed, then opens it: their answers, in the same order."""
    answers = [None] * len(calls)

    def run(i):
        answers[i] = calls[i]()
    threads = []
    gate.close()
    try:
        for i in range(len(calls)):
            t = threading.Thread(target=run, args=(i,))
            t.start()
            threads.append(t)
            wait_for(lambda: queued(srv) >= i + 1, timeout=30, what=f"write {i + 1} queued")
    finally:
        gate.open()
    for t in threads:
        t.join(timeout=60)
    return answers


def test_creates_at_the_cap_in_one_batch_see_each_other(make_server, tmp_path):
    """Two creates of one user in one batch at a cap of 2: the second counts
    the first (and the session it evicted), so both of the user's older
    sessions end and the two new ones stay: whatever answers "how many
    sessions has this user" must see the uncommitted writes of its own
    batch (a count from an in-memory index that follows commits would not)."""
    gate = Gate(tmp_path)
    a, b = replicas(make_server, "--max-sessions-per-user", "2", env=gate.env)
    gate.check(a)
    user = new_user("wc")
    old = [a.api.create(user) for _ in range(2)]
    x, y = in_one_batch(gate, a, lambda: a.api.create(user), lambda: a.api.create(user))
    for s in old + [x, y]:
        record_token(s["token"])
    assert [valid(b, s["token"]) for s in old + [x, y]] == [False, False, True, True]
    assert sorted(s["sessionId"] for s in b.api.list_user(user).json()["sessions"]) == \
        sorted([x["sessionId"], y["sessionId"]])
    for s in old:
        assert events(b, s["sessionId"]) == ["created", "evicted"]


def test_a_users_revocation_ends_a_create_before_it_in_its_batch(make_server, tmp_path):
    """A revocation of a user's sessions ends the one a create before it in
    the same batch made, uncommitted when the revocation runs."""
    gate = Gate(tmp_path)
    a, b = replicas(make_server, "--max-sessions-per-user", "0", env=gate.env)
    gate.check(a)
    user = new_user("wc")
    old = a.api.create(user)
    x, r = in_one_batch(gate, a, lambda: a.api.create(user),
                        lambda: a.api.delete(f"/users/{user}/sessions", expect=200))
    for s in (old, x):
        record_token(s["token"])
    assert r.json() == {"deleted": 2}
    assert not valid(b, old["token"]) and not valid(b, x["token"])
    assert events(b, x["sessionId"]) == ["created", "revoked"]
    assert b.api.list_user(user).json()["sessions"] == []


def test_updates_of_one_session_in_one_batch_build_on_each_other(make_server, tmp_path):
    """Updates of one session queued behind each other in one batch, each
    sent while the committed row was the same: each applies to what the one
    before it wrote (a result computed from the row as it was sent, before
    the batch, would not). Two merges keep both keys; two If-Match of the
    same version answer 200 and 412; a mfa raise behind a plain update
    renews the token once."""
    gate = Gate(tmp_path)
    a, b = replicas(make_server, env=gate.env)
    gate.check(a)
    s = a.api.create(new_user("wc"), data={"k": 0})
    record_token(s["token"])
    sid = s["sessionId"]

    def put(body, version=None):
        return lambda: a.api.put(f"/sessions/{sid}", json=body,
                                 headers={"If-Match": f'"{version}"'} if version else None)
    x, y = in_one_batch(gate, a, put({"data": {"a": 1}}), put({"data": {"b": 2}}))
    assert (x.status_code, y.status_code) == (200, 200)
    assert x.json()["data"] == {"k": 0, "a": 1} and x.json()["version"] == 2
    assert y.json()["data"] == {"k": 0, "a": 1, "b": 2} and y.json()["version"] == 3
    x, y = in_one_batch(gate, a, put({"data": {"c": 3}}, 3), put({"data": {"d": 4}}, 3))
    assert (x.status_code, y.status_code) == (200, 412)
    x, y = in_one_batch(gate, a, put({"geoLocation": "NL"}), put({"mfa": True}))
    assert (x.status_code, y.status_code) == (200, 200)
    assert y.json()["mfa"] is True and y.json()["geoLocation"] == "NL" and "token" in y.json()
    record_token(y.json()["token"])
    view = b.api.get(f"/sessions/{sid}", expect=200).json()
    assert view["data"] == {"k": 0, "a": 1, "b": 2, "c": 3} and view["version"] == 6
    assert valid(b, y.json()["token"])  # (the old one is retired: presenting it is a reuse)
    assert events(b, sid) == ["created"] + ["updated"] * 5 + ["renewed"]


def test_an_update_behind_a_rolling_touch_keeps_the_touch(make_server, tmp_path):
    """A validation's rolling touch queued before an update of the same
    session in one batch, the update sent while the row still had the old
    expiry: the touch moves expiry and lastSeen without a new version, and
    the update must not write the expiry it was sent against back over it."""
    gate = Gate(tmp_path)
    a, b = replicas(make_server, "--touch-fraction", "0", env=gate.env)
    gate.check(a)
    s = a.api.create(new_user("wc"))
    record_token(s["token"])
    sid = s["sessionId"]
    time.sleep(0.01)  # a later expiry for the touch to move to (a floor, not a wait)
    v, u = in_one_batch(gate, a, lambda: a.api.validate(s["token"]),
                        lambda: a.api.put(f"/sessions/{sid}", json={"data": {"x": 1}}))
    assert v["isValid"] and v["expiry"] > s["expiry"]
    assert u.status_code == 200 and u.json()["expiry"] == v["expiry"]
    view = b.api.get(f"/sessions/{sid}", expect=200).json()
    assert view["expiry"] == v["expiry"] and view["data"] == {"x": 1}

"""Races: optimistic locking, lost updates, concurrent deletes and creates."""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from conftest import new_user, wait_for


def _run_with_barrier(n, fn):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(n) as ex:
        return [f.result() for f in [ex.submit(run, i) for i in range(n)]]


def test_if_match_race_exactly_one_wins(api):
    s = api.create()
    sid = s["sessionId"]

    def put(i):
        r = api.put(f"/sessions/{sid}", json={"data": {"winner": i}}, headers={"If-Match": '"1"'})
        return r.status_code, (r.json() if r.status_code == 200 else None)

    results = _run_with_barrier(32, put)
    codes = Counter(c for c, _ in results)
    assert codes == Counter({200: 1, 412: 31}), f"32 PUTs with If-Match \"1\": want one 200 and 31 412, got {dict(codes)}"
    winner = next(b for c, b in results if c == 200)
    g = api.get_session(sid).json()
    assert g["version"] == 2, f"exactly one update should have been applied, version is {g['version']}"
    assert g["data"] == winner["data"], f"stored data {g['data']} is not the winner's {winner['data']}"


def test_version_in_body_race_exactly_one_wins(api):
    s = api.create()
    sid = s["sessionId"]
    results = _run_with_barrier(16, lambda i: api.put(f"/sessions/{sid}", json={"version": 1, "mfa": True}).status_code)
    assert Counter(results) == Counter({200: 1, 412: 15}), f"got {Counter(results)}"


def test_no_lost_updates(api):
    s = api.create()
    sid = s["sessionId"]

    def worker(t):
        codes = []
        for j in range(10):
            codes.append(api.put(f"/sessions/{sid}", json={"data": {f"t{t}_{j}": j}}).status_code)
        return codes

    results = _run_with_barrier(16, worker)
    codes = Counter(c for cs in results for c in cs)
    assert codes == Counter({200: 160}), f"160 unconditional PUTs must all succeed, got {dict(codes)}"
    g = api.get_session(sid).json()
    want = {f"t{t}_{j}": j for t in range(16) for j in range(10)}
    missing = sorted(set(want) - set(g["data"]))
    assert not missing, f"lost updates: {len(missing)} of 160 keys missing, e.g. {missing[:5]}"
    assert g["data"] == want
    assert g["version"] == 161, f"version should be 1 + 160 updates = 161, got {g['version']}"


def test_concurrent_deletes_of_one_session(api):
    s = api.create()
    codes = _run_with_barrier(8, lambda i: api.delete(f"/sessions/{s['sessionId']}").status_code)
    assert Counter(codes) == Counter({204: 1, 404: 7}), f"8 concurrent DELETEs: want one 204, got {Counter(codes)}"


def test_concurrent_bulk_deletes_count_each_session_once(api):
    user = new_user()
    made = [api.create(user)["sessionId"] for _ in range(20)]
    body = {"sessionIds": made}
    counts = _run_with_barrier(4, lambda i: api.post("/sessions/bulk-delete", json=body, expect=200).json()["deleted"])
    assert sum(counts) == 20, f"4 concurrent bulk deletes of the same 20 sessions reported {counts}"
    assert api.list_user(user).json()["sessions"] == []


def test_concurrent_creates_one_user(api):
    user = new_user()
    results = _run_with_barrier(8, lambda i: [api.create(user) for _ in range(10)])
    made = [s for rs in results for s in rs]
    assert len({s["sessionId"] for s in made}) == 80 and len({s["token"] for s in made}) == 80
    listed = api.list_user(user, limit="1000").json()["sessions"]
    assert sorted(x["sessionId"] for x in listed) == sorted(s["sessionId"] for s in made)


def test_delete_user_sessions_while_validating(api):
    user = new_user()
    made = [api.create(user) for _ in range(10)]
    stop = threading.Event()

    def validator(i):
        seen = 0
        while not stop.is_set() and seen < 200:
            v = api.validate(made[i % 10]["token"])
            assert v["isValid"] in (True, False)
            seen += 1
        return seen

    with ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(validator, i) for i in range(3)]
        r = api.delete(f"/users/{user}/sessions", expect=200)
        stop.set()
        for f in futs:
            f.result()
    assert r.json() == {"deleted": 10}
    for m in made:
        assert api.validate(m["token"])["isValid"] is False, "a touch racing a delete must not resurrect a session"


def test_user_revocation_is_atomic_against_concurrent_creates(server):
    """SECURITY.md item 11: revoking a user while creates for that user run;
    every session whose create was acknowledged before the revocation was
    sent is invalid afterwards, and other users are untouched. (The single
    writer orders the revocation against every create: there is no window.)"""
    a = server.api
    user = new_user("cut")
    bystander = a.create(new_user("cut"))
    created, lock, stop = [], threading.Lock(), threading.Event()

    def creator():
        while not stop.is_set():
            s = a.create(user)
            with lock:
                created.append((time.monotonic(), s))

    threads = [threading.Thread(target=creator) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(created) >= 40, timeout=30, what="40 creates")
        t_send = time.monotonic()
        deleted = a.delete(f"/users/{user}/sessions", expect=200).json()["deleted"]
        time.sleep(0.2)  # creates keep running after the cut-off
    finally:
        stop.set()
        for t in threads:
            t.join()
    before = [s for t, s in created if t < t_send]
    assert deleted >= 1 and before
    for s in before:
        assert a.validate(s["token"], touch=False)["isValid"] is False, \
            f"session {s['sessionId']} acknowledged before the revocation still validates"
    assert a.validate(bystander["token"], touch=False)["isValid"] is True

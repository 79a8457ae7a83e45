"""Crash safety in the spirit of SQLite's crash tests: under concurrent
create, update and delete load, kill -9 the server at a random moment, many
times (SESSIOND_CRASH_ROUNDS, default 20; the seed is printed and
SESSIOND_CRASH_SEED replays it). After every restart:
- every acknowledged create is there (unless a delete of it was sent: an
  unacknowledged delete may or may not have happened), and validates with
  its token;
- every acknowledged delete holds: GET 404 and the token no longer validates;
- every acknowledged update is there (the session's version is at least the
  acknowledged one and the data key it set is present);
- the SQLite file passes PRAGMA integrity_check;
- the server becomes ready again (the time from spawn to the first 200 of
  /readyz is printed; it is a measurement, not a pass mark: `make bench`
  owns start-up times).
The check presents hundreds of revoked tokens from one address, so the
server runs without the guessing throttle (conftest's default for tests
that do not set it)."""
import os
import random
import sqlite3
import threading
import time
from urllib.parse import quote

import requests

from conftest import new_user, wait_for


def _load(base, stop, acked, lock, rng_seed):
    rng = random.Random(rng_seed)
    s = requests.Session()
    mine = []
    user = new_user()
    while not stop.is_set():
        op = rng.random()
        try:
            if op < 0.5 or not mine:
                r = s.post(base + "/sessions", json={"userId": user, "data": {"n": 0}}, timeout=5)
                if r.status_code == 201:
                    o = r.json()
                    with lock:
                        acked["created"][o["sessionId"]] = o["token"]
                    mine.append(o["sessionId"])
            elif op < 0.8:
                sid = rng.choice(mine)
                key = f"k{rng.randrange(1000000)}"
                r = s.put(base + f"/sessions/{sid}", json={"data": {key: 1}}, timeout=5)
                if r.status_code == 200:
                    with lock:
                        prev = acked["updated"].get(sid, (0, []))
                        acked["updated"][sid] = (max(prev[0], r.json()["version"]), prev[1] + [key])
            else:
                sid = mine.pop(rng.randrange(len(mine)))
                with lock:  # from now on its fate is unknown until the 204
                    acked["delete_sent"].add(sid)
                r = s.delete(base + f"/sessions/{sid}", timeout=5)
                if r.status_code == 204:
                    with lock:
                        acked["deleted"].add(sid)
        except requests.RequestException:
            return  # the server died under us: that is the point


def test_kill9_at_random_moments_loses_nothing_acknowledged(make_server):
    rounds = int(os.environ.get("SESSIOND_CRASH_ROUNDS", "20"))
    seed = int(os.environ.get("SESSIOND_CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash seed {seed} (replay with SESSIOND_CRASH_SEED={seed}), {rounds} rounds")
    rng = random.Random(seed)
    srv = make_server()
    acked = {"created": {}, "deleted": set(), "updated": {}, "delete_sent": set()}
    lock = threading.Lock()
    ready_times = []
    checked, seen_deleted = set(), set()
    for rnd in range(rounds):
        stop = threading.Event()
        threads = [threading.Thread(target=_load, args=(srv.url, stop, acked, lock, rng.random()))
                   for _ in range(8)]
        with lock:
            before = len(acked["created"]) + len(acked["updated"]) + len(acked["deleted"])
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.6))
        # A round that acknowledged nothing (a slow machine, a slow restart)
        # would check nothing: wait for the first acknowledgement of the round.
        wait_for(lambda: len(acked["created"]) + len(acked["updated"]) + len(acked["deleted"]) > before,
                 timeout=60, what=f"an acknowledged write in round {rnd}")
        srv.kill9()  # mid-load: some requests are in flight, some acknowledged
        stop.set()
        for t in threads:
            t.join(timeout=10)

        db = os.path.join(srv.data_dir, "sessiond.db")
        con = sqlite3.connect(f"file:{quote(db)}?mode=ro", uri=True, timeout=10)
        try:
            # Before the restart: what kill -9 left must already be consistent
            # (recovery of the WAL is SQLite's; the check reads through it).
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", \
                f"seed {seed} round {rnd}: integrity_check failed"
        finally:
            con.close()

        t0 = time.monotonic()
        srv.start()
        wait_for(lambda: srv.api.get("/readyz").status_code == 200, timeout=60, interval=0.01,
                 what=f"/readyz 200 after restart {rnd}")
        ready_times.append(time.monotonic() - t0)

        with lock:
            created = dict(acked["created"])
            deleted = set(acked["deleted"])
            updated = dict(acked["updated"])
            in_doubt = set(acked["delete_sent"]) - deleted  # sent, never acknowledged
        # Each round checks what it acknowledged plus a sample of the older
        # history; the last round checks everything.
        last = rnd == rounds - 1
        fresh = set(created) - checked
        older = sorted(set(created) - fresh)
        sample = fresh | set(rng.sample(older, min(50, len(older))))
        checked |= fresh
        for sid, token in created.items():
            if sid in deleted or sid in in_doubt or not (last or sid in sample):
                continue
            g = srv.api.get(f"/sessions/{sid}")
            assert g.status_code == 200, f"seed {seed} round {rnd}: acknowledged create {sid} lost"
            if sid in updated:
                version, keys = updated[sid]
                body = g.json()
                assert body["version"] >= version, \
                    f"seed {seed} round {rnd}: {sid} version {body['version']} < acked {version}"
                missing = [k for k in keys if k not in body["data"]]
                assert not missing, f"seed {seed} round {rnd}: acked update keys lost: {missing}"
            assert srv.api.validate(token, touch=False)["isValid"] is True
        new_deletes = deleted - seen_deleted
        seen_deleted |= new_deletes
        for sid in deleted:
            if not (last or sid in sample or sid in new_deletes):
                continue
            srv.api.get(f"/sessions/{sid}", expect=404)
            assert srv.api.validate(created[sid], touch=False)["isValid"] is False, \
                f"seed {seed} round {rnd}: acknowledged delete of {sid} did not hold"
    print(f"acknowledged: {len(acked['created'])} creates, {len(acked['updated'])} updated "
          f"sessions, {len(acked['deleted'])} deletes; ready after restart: "
          f"median {sorted(ready_times)[len(ready_times) // 2] * 1000:.0f} ms, "
          f"max {max(ready_times) * 1000:.0f} ms")
    assert acked["created"], "the load produced no acknowledged write at all"

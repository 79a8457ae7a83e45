"""Crash safety in the spirit of SQLite's crash tests: under a concurrent
mixed load, kill -9 the server at a random moment, many times
(SESSIOND_CRASH_ROUNDS, default 20; `make crash ROUNDS=N` for depth; the
seed is printed and SESSIOND_CRASH_SEED replays it). The load is every kind
of write: creates at a per-user cap (--max-sessions-per-user 6, so creates
evict), updates, token rotation (refresh), mfa renewal (a PUT that raises
privilege issues a new token), single deletes and user-wide revocations
(all but one). After every restart:
- every acknowledged create is there, or its absence is explained: a delete
  or a user-wide revocation of it was sent (an unacknowledged one may or may
  not have happened), or it was evicted (history says `evicted`) by a later
  create of its user;
- every acknowledged token change holds: the newest acknowledged token
  validates, unless a later change of it was sent and not acknowledged
  (then which token is current is unknown, and presenting the old one would
  be a reuse: it is not presented);
- every acknowledged update is there (the version is at least the
  acknowledged one and the data key it set is present);
- every acknowledged revocation holds: GET 404 and the token no longer
  validates;
- no user has more active sessions than the cap;
- the SQLite file passes PRAGMA integrity_check (embedded store);
- the server becomes ready again (the time from spawn to the first 200 of
  /readyz is printed; it is a measurement, not a pass mark: `make bench`
  owns start-up times).
The check presents hundreds of revoked tokens from one address, so the
server runs without the guessing throttle (conftest's default for tests
that do not set it). Runs on PostgreSQL too (`make crash-postgres`)."""
import os
import random
import sqlite3
import threading
import time
from urllib.parse import quote

import requests

from conftest import PG_MODE, db_query, new_user, wait_for

CAP = 6


class Acked:
    """What the load sent and what the server acknowledged, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.created = {}      # sid -> (user, order of its create among the user's)
        self.token = {}        # sid -> the newest acknowledged token
        self.token_doubt = set()  # a token change sent, not acknowledged
        self.updated = {}      # sid -> (acknowledged version, data keys)
        self.end_sent = set()  # a delete or user-wide revocation covering it was sent
        self.ended = set()     # ... and acknowledged
        self.creates_sent = {}  # user -> creates sent (acknowledged or not)
        self.writes = 0        # acknowledged writes of any kind

    def count(self):
        with self.lock:
            return self.writes


def _load(base, stop, acked, rng_seed):
    rng = random.Random(rng_seed)
    s = requests.Session()
    mine = []
    user = new_user("crash")

    def bearer(sid):
        return {"Authorization": f"Bearer {acked.token[sid]}"}

    while not stop.is_set():
        op = rng.random()
        try:
            if op < 0.35 or not mine:
                with acked.lock:
                    order = acked.creates_sent.get(user, 0)
                    acked.creates_sent[user] = order + 1
                r = s.post(base + "/sessions", json={"userId": user, "data": {"n": 0}}, timeout=5)
                if r.status_code == 201:
                    o = r.json()
                    with acked.lock:
                        acked.created[o["sessionId"]] = (user, order)
                        acked.token[o["sessionId"]] = o["token"]
                        acked.writes += 1
                    mine.append(o["sessionId"])
            elif op < 0.55:
                sid = rng.choice(mine)
                key = f"k{rng.randrange(1000000)}"
                r = s.put(base + f"/sessions/{sid}", json={"data": {key: 1}}, timeout=5)
                if r.status_code == 200:
                    with acked.lock:
                        prev = acked.updated.get(sid, (0, []))
                        acked.updated[sid] = (max(prev[0], r.json()["version"]), prev[1] + [key])
                        acked.writes += 1
            elif op < 0.75:
                sid = rng.choice(mine)
                renew = op < 0.65  # an mfa raise renews the token; a refresh rotates it
                with acked.lock:
                    if sid in acked.token_doubt:
                        continue
                    acked.token_doubt.add(sid)
                if renew:
                    r = s.put(base + f"/sessions/{sid}", json={"mfa": True}, timeout=5)
                else:
                    r = s.post(base + f"/sessions/{sid}/refresh", headers=bearer(sid), timeout=5)
                if r.status_code == 200:
                    o = r.json()
                    with acked.lock:
                        if "token" in o:
                            acked.token[sid] = o["token"]
                        prev = acked.updated.get(sid, (0, []))
                        acked.updated[sid] = (max(prev[0], o["version"]), prev[1])
                        acked.token_doubt.discard(sid)
                        acked.writes += 1
                elif r.status_code in (401, 404):
                    # Refused: nothing changed (the session ended, or a
                    # renewal happened already: mfa was true).
                    with acked.lock:
                        acked.token_doubt.discard(sid)
            elif op < 0.92:
                sid = mine.pop(rng.randrange(len(mine)))
                with acked.lock:  # from now on its fate is unknown until the 204
                    acked.end_sent.add(sid)
                r = s.delete(base + f"/sessions/{sid}", timeout=5)
                if r.status_code in (204, 404):  # 404: evicted meanwhile
                    with acked.lock:
                        if r.status_code == 204:
                            acked.ended.add(sid)
                        acked.writes += 1
            else:
                keep = rng.choice(mine)
                gone = [x for x in mine if x != keep]
                with acked.lock:
                    acked.end_sent.update(gone)
                r = s.delete(base + f"/users/{user}/sessions", params={"except": keep}, timeout=5)
                if r.status_code == 200:
                    mine = [keep]
                    with acked.lock:
                        acked.ended.update(gone)
                        acked.writes += 1
        except requests.RequestException:
            return  # the server died under us: that is the point


def _integrity_ok(data_dir):
    db = os.path.join(data_dir, "sessiond.db")
    con = sqlite3.connect(f"file:{quote(db)}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def _end_reason(data_dir, sid):
    rows = db_query(data_dir, "SELECT end_reason FROM session_history WHERE id = ?", (sid,))
    return rows[0][0] if rows else None


def test_kill9_at_random_moments_loses_nothing_acknowledged(make_server):
    rounds = int(os.environ.get("SESSIOND_CRASH_ROUNDS", "20"))
    seed = int(os.environ.get("SESSIOND_CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash seed {seed} (replay with SESSIOND_CRASH_SEED={seed}), {rounds} rounds")
    rng = random.Random(seed)
    srv = make_server("--max-sessions-per-user", str(CAP), "--refresh-grace", "1h")
    acked = Acked()
    ready_times = []
    checked = set()
    lost = revocations_lost = 0
    for rnd in range(rounds):
        stop = threading.Event()
        threads = [threading.Thread(target=_load, args=(srv.url, stop, acked, rng.random()))
                   for _ in range(8)]
        before = acked.count()
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.6))
        # A round that acknowledged nothing (a slow machine, a slow restart)
        # would check nothing: wait for the first acknowledgement of the round.
        wait_for(lambda: acked.count() > before, timeout=60, what=f"an acknowledged write in round {rnd}")
        srv.kill9()  # mid-load: some requests are in flight, some acknowledged
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if not PG_MODE:
            # Before the restart: what kill -9 left must already be consistent
            # (recovery of the WAL is SQLite's; the check reads through it).
            assert _integrity_ok(srv.data_dir), f"seed {seed} round {rnd}: integrity_check failed"

        t0 = time.monotonic()
        srv.start()
        wait_for(lambda: srv.api.get("/readyz").status_code == 200, timeout=60, interval=0.01,
                 what=f"/readyz 200 after restart {rnd}")
        ready_times.append(time.monotonic() - t0)

        with acked.lock:
            created = dict(acked.created)
            token = dict(acked.token)
            doubt = set(acked.token_doubt)
            updated = dict(acked.updated)
            end_sent, ended = set(acked.end_sent), set(acked.ended)
            creates_sent = dict(acked.creates_sent)
        # Each round checks what it acknowledged plus a sample of the older
        # history; the last round checks everything.
        last = rnd == rounds - 1
        fresh = set(created) - checked
        older = sorted(set(created) - fresh)
        sample = fresh | set(rng.sample(older, min(50, len(older))))
        checked |= fresh
        for sid, (user, order) in created.items():
            if not (last or sid in sample):
                continue
            g = srv.api.get(f"/sessions/{sid}")
            if sid in ended:
                if g.status_code != 404 or srv.api.validate(token[sid], touch=False)["isValid"]:
                    revocations_lost += 1
                    raise AssertionError(f"seed {seed} round {rnd}: acknowledged revocation of "
                                         f"{sid} did not hold ({g.status_code})")
                continue
            if g.status_code == 404:
                reason = _end_reason(srv.data_dir, sid)
                evicted = reason == "evicted" and creates_sent.get(user, 0) > order + 1
                if not (sid in end_sent or evicted):
                    lost += 1
                    raise AssertionError(f"seed {seed} round {rnd}: acknowledged create {sid} lost "
                                         f"(history: {reason})")
                continue
            assert g.status_code == 200, g.text
            if sid in updated:
                version, keys = updated[sid]
                body = g.json()
                assert body["version"] >= version, \
                    f"seed {seed} round {rnd}: {sid} version {body['version']} < acked {version}"
                missing = [k for k in keys if k not in (body.get("data") or {})]
                assert not missing, f"seed {seed} round {rnd}: acked update keys lost: {missing}"
            if sid not in doubt and sid not in end_sent:
                assert srv.api.validate(token[sid], touch=False)["isValid"] is True, \
                    f"seed {seed} round {rnd}: the acknowledged token of {sid} does not validate"
        users = {u for u, _ in created.values()} if last else {created[sid][0] for sid in sample}
        for user in users:
            n = len(srv.api.list_user(user, limit=100).json()["sessions"])
            assert n <= CAP, f"seed {seed} round {rnd}: {user} has {n} active sessions, cap {CAP}"
    print(f"rounds {rounds}; acknowledged writes {acked.writes} ({len(acked.created)} creates, "
          f"{len(acked.ended)} revocations); acknowledged writes lost {lost}; revocations lost "
          f"{revocations_lost}; ready after restart: median "
          f"{sorted(ready_times)[len(ready_times) // 2] * 1000:.0f} ms, slowest "
          f"{max(ready_times) * 1000:.0f} ms")
    assert acked.created, "the load produced no acknowledged write at all"

"""Persistence: restart, SIGINT, kill -9 durability, on-disk layout, no plaintext tokens."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import (db_query, history_rows, new_user, scan_paths_for_tokens, sleep_until, wait_for)


def _snapshot(api, sids):
    return {sid: api.get_session(sid).json() for sid in sids}


def test_restart_keeps_everything(make_server):
    srv = make_server()
    api = srv.api
    user = new_user("restart")
    full = api.create(user, deviceId="d", deviceInfo="info", userAgent="ua", ipAddress="2001:db8::7",
                      geoLocation={"c": "FR"}, mfa=True, data={"k": [1, {"z": None}]}, ttlSeconds=7200)
    plain = [api.create(user) for _ in range(3)]
    gone = api.create(user)
    short = api.create(user, ttlSeconds=1)
    t_short = time.monotonic()
    api.put(f"/sessions/{plain[0]['sessionId']}", json={"data": {"a": 1}, "mfa": True}, expect=200)
    api.put(f"/sessions/{plain[0]['sessionId']}", json={"data": {"b": 2}}, headers={"If-Match": '"2"'}, expect=200)
    api.delete(f"/sessions/{gone['sessionId']}", expect=204)
    live = [full] + plain
    before = _snapshot(api, [s["sessionId"] for s in live])
    listing = api.list_user(user, limit="1000").json()["sessions"]

    srv.stop()
    sleep_until(t_short + 2.5)             # the ttlSeconds=1 session expires while we are down
    srv.start()

    after = _snapshot(api, [s["sessionId"] for s in live])
    for sid in before:
        assert after[sid] == before[sid], f"session {sid} changed across restart:\n{before[sid]}\n{after[sid]}"
    assert after[plain[0]["sessionId"]]["version"] == 3
    assert after[plain[0]["sessionId"]]["data"] == {"a": 1, "b": 2}
    for s in live:
        v = api.validate(s["token"], touch=False)
        assert v["isValid"] is True and v["sessionId"] == s["sessionId"], f"token of {s['sessionId']} lost: {v}"
    assert api.validate(gone["token"])["isValid"] is False
    api.get(f"/sessions/{gone['sessionId']}", expect=404)
    assert [x[3] for x in history_rows(srv.data_dir, gone["sessionId"])] == ["revoked"]
    assert api.validate(short["token"], touch=False)["isValid"] is False, "expired during downtime must be invalid"
    api.get(f"/sessions/{short['sessionId']}", expect=404)
    listing2 = api.list_user(user, limit="1000").json()["sessions"]
    assert [x["sessionId"] for x in listing2] == [x["sessionId"] for x in listing if x["sessionId"] != short["sessionId"]]
    rows = wait_for(lambda: history_rows(srv.data_dir, short["sessionId"]), timeout=10,
                    what="sweeper to move the session that expired during downtime")
    assert rows[0][3] == "expired"
    # new sessions after restart are fine and distinct
    n = api.create(user)
    assert n["sessionId"] not in before and api.validate(n["token"])["isValid"] is True


def test_sigint_is_graceful(make_server):
    srv = make_server()
    s = srv.api.create()
    srv.stop(sig=signal.SIGINT)
    srv.start()
    assert srv.api.validate(s["token"], touch=False)["isValid"] is True


def test_kill9_durability_loop(make_server):
    srv = make_server()
    api = srv.api
    acked_create = {}      # sid -> token
    acked_delete = set()
    acked_put = {}         # sid -> data key that must be present
    for rnd in range(5):
        user = new_user(f"k9r{rnd}")

        def worker(w):
            mine = []
            for i in range(5):
                s = api.create(user)
                acked_create[s["sessionId"]] = s["token"]
                mine.append(s["sessionId"])
            # 10 deletes per round in total: workers 0,1 delete 3, workers 2,3 delete 2
            ndel = 3 if w < 2 else 2
            for sid in mine[:ndel]:
                api.delete(f"/sessions/{sid}", expect=204)
                acked_delete.add(sid)
            key = f"r{rnd}w{w}"
            api.put(f"/sessions/{mine[-1]}", json={"data": {key: True}}, expect=200)
            acked_put[mine[-1]] = key

        with ThreadPoolExecutor(4) as ex:
            for f in [ex.submit(worker, w) for w in range(4)]:
                f.result()
        srv.kill9()                      # right after the last acknowledged response
        srv.start()
        assert len(acked_create) == 20 * (rnd + 1) and len(acked_delete) == 10 * (rnd + 1)
        for sid, tok in acked_create.items():
            r = api.get(f"/sessions/{sid}")
            if sid in acked_delete:
                assert r.status_code == 404, f"round {rnd}: acknowledged DELETE of {sid} lost after kill -9"
                assert api.validate(tok, touch=False)["isValid"] is False
            else:
                assert r.status_code == 200, f"round {rnd}: acknowledged create {sid} lost after kill -9"
                assert api.validate(tok, touch=False)["isValid"] is True, f"round {rnd}: token of {sid} lost"
                if sid in acked_put:
                    body = r.json()
                    assert body["data"].get(acked_put[sid]) is True and body["version"] == 2, \
                        f"round {rnd}: acknowledged PUT on {sid} lost after kill -9: {body}"
    reasons = db_query(srv.data_dir, "SELECT end_reason, COUNT(*) FROM session_history GROUP BY end_reason")
    assert dict(reasons).get("revoked") == 50, f"50 acknowledged deletes should be in history: {reasons}"


def test_db_layout(make_server):
    srv = make_server()
    s = srv.api.create()
    srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    assert srv.db_path.exists(), f"{srv.db_path} missing"
    tables = {r[0] for r in db_query(srv.data_dir, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "session_history"} <= tables, f"tables: {tables}"
    cols = {r[1] for r in db_query(srv.data_dir, "PRAGMA table_info(session_history)")}
    assert {"id", "user_id", "ended_at", "end_reason"} <= cols, f"session_history columns: {cols}"
    assert db_query(srv.data_dir, "SELECT COUNT(*) FROM sessions WHERE id = ?", (s["sessionId"],))[0][0] == 0


def _scan_data_dir(srv, tokens):
    findings, scanned = scan_paths_for_tokens([srv.data_dir], tokens)
    assert any(p.endswith("sessiond.db") for p in scanned), f"no sessiond.db among scanned files {scanned}"
    return findings, scanned


def test_tokens_not_stored_in_plaintext(make_server):
    srv = make_server()
    api = srv.api
    made = [api.create(data={"n": i}) for i in range(10)]
    for s in made[:5]:
        api.validate(s["token"])
    api.put(f"/sessions/{made[0]['sessionId']}", json={"mfa": True}, expect=200)
    api.delete(f"/sessions/{made[1]['sessionId']}", expect=204)
    tokens = [s["token"] for s in made]

    # crash: the WAL (-wal / -shm) is most likely still there
    srv.kill9()
    findings, scanned = _scan_data_dir(srv, tokens)
    assert not findings, f"tokens found on disk after kill -9 (files {scanned}):\n" + "\n".join(findings)

    # graceful stop: checkpointed database
    srv.restart()
    more = [api.create() for _ in range(5)]
    tokens += [s["token"] for s in more]
    srv.stop()
    findings, scanned = _scan_data_dir(srv, tokens)
    assert not findings, f"tokens found on disk after stop (files {scanned}):\n" + "\n".join(findings)
    srv.start()
    for s in more:
        assert api.validate(s["token"], touch=False)["isValid"] is True


def test_touch_fraction_persistence(make_server):
    """A touch is persisted only when it moves expiry by more than F x idle timeout.

    Checked across a graceful restart (touch writes may be batched, so no
    kill -9 here: only the persist/don't-persist decision is under test)."""
    # F = 0.5, idle 10 s: a touch 1.2 s after create moves expiry ~1.2 s < 5 s -> not persisted.
    srv = make_server("--idle-timeout", "10s", "--touch-fraction", "0.5")
    s = srv.api.create()
    t0 = time.monotonic()
    sleep_until(t0 + 1.2)
    v = srv.api.validate(s["token"])
    assert v["isValid"] and v["expiry"] > s["expiry"], f"touch should report an extended expiry: {s['expiry']} -> {v}"
    srv.restart()
    g = srv.api.get_session(s["sessionId"]).json()
    assert g["expiry"] == s["expiry"], \
        f"a touch moving expiry by < F x idle must not be persisted: stored {g['expiry']}, created {s['expiry']}"

    # F = 0.05 (default), idle 10 s: threshold 0.5 s; a 1.2 s move is persisted.
    srv2 = make_server("--idle-timeout", "10s")
    s = srv2.api.create()
    t0 = time.monotonic()
    sleep_until(t0 + 1.2)
    v = srv2.api.validate(s["token"])
    assert v["isValid"] and v["expiry"] > s["expiry"]
    srv2.restart()
    g = srv2.api.get_session(s["sessionId"]).json()
    assert g["expiry"] == v["expiry"], \
        f"a touch moving expiry by > F x idle must be persisted: stored {g['expiry']}, touched {v['expiry']}"

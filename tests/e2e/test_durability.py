"""Persistence: restart, SIGINT, kill -9 durability, on-disk layout, no plaintext tokens."""

import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import (SESSIOND_BIN, ARTIFACT_DIRS, PG_MODE, child_env, creates_with_a_refused_user, db_query,
                      history_rows, new_user, record_token, scan_paths_for_tokens, sleep_until, store_files,
                      wait_for)


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
    renewed = api.put(f"/sessions/{plain[0]['sessionId']}", json={"data": {"a": 1}, "mfa": True},
                      expect=200).json()
    plain[0] = dict(plain[0], token=renewed["token"])  # mfa raised: the token was renewed
    record_token(renewed["token"])
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


def test_kill9_during_concurrent_writes(make_server):
    """kill -9 while writes are in flight: every acknowledged create/delete survives."""
    import threading
    srv = make_server()
    api = srv.api
    user = new_user("k9live")
    acked_create, acked_delete = {}, set()
    delete_sent = set()        # deletes that may have happened without an acknowledgement
    stop = threading.Event()

    def worker(w):
        mine = []
        for i in range(200):                       # bounded; normally stopped by the kill
            if stop.is_set():
                return
            try:
                if i % 3 == 2 and mine:
                    sid = mine.pop(0)
                    delete_sent.add(sid)
                    r = api.delete(f"/sessions/{sid}")
                    if r.status_code == 204:
                        acked_delete.add(sid)
                else:
                    r = api.post("/sessions", json={"userId": user, "data": {"w": w, "i": i}})
                    if r.status_code == 201:
                        b = r.json()
                        acked_create[b["sessionId"]] = b["token"]
                        mine.append(b["sessionId"])
            except requests.RequestException:
                return                             # the server is gone

    with ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(worker, w) for w in range(4)]
        wait_for(lambda: len(acked_create) >= 40 or all(f.done() for f in futs), timeout=30,
                 what="some acknowledged writes")
        srv.kill9()
        stop.set()
        for f in futs:
            f.result()
    assert acked_create, "no create was acknowledged before the kill"
    srv.start()
    lost = [sid for sid in acked_create if sid not in delete_sent
            and api.get(f"/sessions/{sid}").status_code != 200]
    assert not lost, f"{len(lost)} acknowledged creates lost by kill -9 mid-load, e.g. {lost[:3]}"
    undone = [sid for sid in acked_delete if api.get(f"/sessions/{sid}").status_code != 404]
    assert not undone, f"{len(undone)} acknowledged deletes undone by kill -9 mid-load, e.g. {undone[:3]}"
    for sid, tok in list(acked_create.items())[:20]:
        if sid in acked_delete or sid not in delete_sent:
            assert api.validate(tok, touch=False)["isValid"] is (sid not in acked_delete)


def test_kill9_after_bulk_and_user_deletes(make_server):
    srv = make_server()
    api = srv.api
    u1, u2 = new_user(), new_user()
    s1 = [api.create(u1) for _ in range(6)]
    s2 = [api.create(u2) for _ in range(3)]
    r = api.post("/sessions/bulk-delete", json={"sessionIds": [s1[0]["sessionId"], s1[1]["sessionId"]]}, expect=200)
    assert r.json() == {"deleted": 2}
    r = api.delete(f"/users/{u2}/sessions", expect=200)
    assert r.json() == {"deleted": 3}
    r = api.delete(f"/users/{u1}/sessions", params={"except": s1[5]["sessionId"]}, expect=200)
    assert r.json() == {"deleted": 3}
    srv.kill9()
    srv.start()
    assert [x["sessionId"] for x in api.list_user(u1).json()["sessions"]] == [s1[5]["sessionId"]]
    assert api.list_user(u2).json()["sessions"] == []
    for s in s1[:5] + s2:
        assert api.validate(s["token"], touch=False)["isValid"] is False, f"acknowledged delete of {s['sessionId']} lost"


@pytest.mark.sqlite_only("a trigger in the embedded store's own file refuses one user's sessions")
def test_a_write_the_store_refuses_fails_alone_in_its_batch(make_server):
    """Group commit runs a batch without a savepoint a write (each copies
    the pages it dirties first); a write SQLite refuses (here a trigger the
    test adds to the store's file) fails that attempt, which is rolled back
    and run again with a savepoint a write: the refused write answers 503
    and leaves nothing, the writes around it commit."""
    import re
    import sqlite3
    srv = make_server("--sweep-interval", "1h")
    srv.api.create(new_user("whole"))  # the schema exists
    con = sqlite3.connect(srv.data_dir / "sessiond.db", timeout=10)
    con.execute("CREATE TRIGGER refuse_one BEFORE INSERT ON sessions WHEN NEW.user_id = 'refused' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    con.commit()
    con.close()
    users = creates_with_a_refused_user(srv, "whole")
    stored = {r[0] for r in db_query(srv.data_dir, "SELECT user_id FROM sessions")}
    assert "refused" not in stored and {u for u in users if u != "refused"} <= stored
    assert db_query(srv.data_dir, "SELECT count(*) FROM audit_events WHERE user_id = 'refused'")[0][0] == 0
    m = re.search(r"^sessiond_store_batch_retries_total (\d+)$", srv.api.get("/metrics").text, re.M)
    assert m and int(m.group(1)) >= 1, "a batch with a refused write runs again"


def test_db_layout(make_server):
    srv = make_server()
    s = srv.api.create()
    srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    if PG_MODE:
        tables = {r[0] for r in db_query(srv.data_dir, "SELECT table_name FROM information_schema.tables "
                                                       "WHERE table_schema = 'public'")}
        assert {"sessions", "session_history", "rotated_tokens", "audit_events",
                "sessiond_schema_migrations", "sessiond_cache_epoch", "sessiond_not_before", "sessiond_outbox"} <= tables, f"tables: {tables}"
        cols = {r[0] for r in db_query(srv.data_dir, "SELECT column_name FROM information_schema.columns "
                                                     "WHERE table_name = 'session_history'")}
        assert db_query(srv.data_dir, "SELECT version FROM sessiond_schema_migrations") == [(1,), (2,), (3,), (4,), (5,), (6,)]
    else:
        assert srv.db_path.exists(), f"{srv.db_path} missing"
        tables = {r[0] for r in db_query(srv.data_dir, "SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"sessions", "session_history"} <= tables, f"tables: {tables}"
        cols = {r[1] for r in db_query(srv.data_dir, "PRAGMA table_info(session_history)")}
    assert {"id", "user_id", "ended_at", "end_reason"} <= cols, f"session_history columns: {cols}"
    assert db_query(srv.data_dir, "SELECT COUNT(*) FROM sessions WHERE id = ?", (s["sessionId"],))[0][0] == 0


def _scan_data_dir(srv, tokens):
    findings, scanned = scan_paths_for_tokens([srv.data_dir, *store_files(srv.data_dir)], tokens)
    want = "/pg_wal/" if PG_MODE else "sessiond.db"
    assert any(want in p or p.endswith(want) for p in scanned), f"no {want} among scanned files {scanned[:20]}"
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


# Touch persistence is checked across a graceful restart: touch writes may be
# batched, so no kill -9 here; only the persist / don't-persist rule is tested.
def test_touch_below_fraction_is_reported_but_not_persisted(make_server):
    # F = 0.5, idle 10 s: a touch 1.2 s after create moves expiry ~1.2 s < 5 s.
    # Contract (README, "Rolling expiry"): an extension too small to be worth
    # a write is neither written nor reported - the reported expiry is always
    # the one the server enforces, so the idle timeout is effectively between
    # idle x (1 - F) and idle after the last activity.
    srv = make_server("--idle-timeout", "10s", "--touch-fraction", "0.5")
    s = srv.api.create()
    t0 = time.monotonic()
    sleep_until(t0 + 1.2)
    v = srv.api.validate(s["token"])
    assert v["isValid"] is True
    assert v["expiry"] == s["expiry"], \
        (f"validate must report the enforced expiry when the extension is below F x idle: "
         f"created {s['expiry']}, validate said {v['expiry']}")
    srv.restart()
    g = srv.api.get_session(s["sessionId"]).json()
    assert g["expiry"] == s["expiry"], \
        f"a touch moving expiry by < F x idle must not be persisted: stored {g['expiry']}, created {s['expiry']}"


def test_touch_above_fraction_is_persisted(make_server):
    # F = 0.05 (default), idle 10 s: threshold 0.5 s; a 1.2 s move is persisted.
    srv = make_server("--idle-timeout", "10s")
    s = srv.api.create()
    t0 = time.monotonic()
    sleep_until(t0 + 1.2)
    v = srv.api.validate(s["token"])
    assert v["isValid"] and v["expiry"] > s["expiry"], f"touch must extend: {s['expiry']} -> {v}"
    srv.restart()
    g = srv.api.get_session(s["sessionId"]).json()
    assert g["expiry"] == v["expiry"], \
        f"a touch moving expiry by > F x idle must be persisted: stored {g['expiry']}, touched {v['expiry']}"


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mnt = tmp_path / "smallfs"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode(errors='replace').strip()}")
    yield mnt
    # keep a copy of what the server wrote there for the end-of-run token scan
    copy = tmp_path / "smallfs-copy"
    shutil.copytree(mnt, copy, ignore=shutil.ignore_patterns("filler"), dirs_exist_ok=True)
    ARTIFACT_DIRS.append(copy)
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill_disk_and_create(srv, fs):
    """Fill the filesystem, then create ~3 KiB sessions until one fails.
    Returns (statuses, acked {sid: token}, filler path)."""
    acked = {}
    for _ in range(20):
        b = srv.api.create(data={"before": "fill"})
        acked[b["sessionId"]] = b["token"]
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as f:          # take every free block
        for size in (65536, 4096, 512):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    statuses = []
    for _ in range(200):
        r = srv.api.post("/sessions", json={"userId": new_user("full"), "data": {"pad": "p" * 3000}})
        statuses.append(r.status_code)
        if r.status_code != 201:
            break
        acked[r.json()["sessionId"]] = r.json()["token"]
    return statuses, acked, filler


@pytest.mark.sqlite_only("the small filesystem holds the embedded store; PostgreSQL keeps its files elsewhere")
def test_full_disk_fails_writes_without_false_acks(small_fs, make_server):
    srv = make_server(data_dir=small_fs / "data")
    api = srv.api
    try:
        statuses, acked, filler = _fill_disk_and_create(srv, small_fs)
        assert statuses[-1] != 201, "200 creates of ~3 KiB all succeeded on a full 4 MiB filesystem"
        assert statuses[-1] in (500, 503, 507), \
            f"a create the store cannot persist should fail with a 5xx, got {statuses[-1]} after {len(acked)} creates"
        api.get("/healthz", expect=200)
        for sid in list(acked)[:5]:
            api.get(f"/sessions/{sid}", expect=200)      # reads keep working
    finally:
        (small_fs / "filler").unlink(missing_ok=True)
    # with space again, writes work (possibly after a restart) and nothing acknowledged is lost
    srv.stop()
    srv.start()
    for sid, tok in acked.items():
        api.get(f"/sessions/{sid}", expect=200)
        assert api.validate(tok, touch=False)["isValid"] is True, f"acknowledged create {sid} lost"
    api.create()
    api.get("/readyz", expect=200)


@pytest.mark.sqlite_only("the small filesystem holds the embedded store; PostgreSQL keeps its files elsewhere")
def test_readyz_503_when_store_cannot_write(small_fs, make_server):
    srv = make_server(data_dir=small_fs / "data")
    srv.api.get("/readyz", expect=200)
    try:
        statuses, acked, _ = _fill_disk_and_create(srv, small_fs)
        assert statuses[-1] != 201
        wait_for(lambda: srv.api.get("/readyz").status_code == 503, timeout=10,
                 what=f"/readyz to answer 503 once the store cannot write (create got {statuses[-1]})")
    finally:
        (small_fs / "filler").unlink(missing_ok=True)


@pytest.mark.sqlite_only("the small filesystem holds the embedded store; PostgreSQL keeps its files elsewhere")
def test_full_disk_recovers_without_a_restart_and_stays_sound(small_fs, make_server):
    """Issue #6: once space is freed, writes come back by themselves (no
    restart), readiness returns, and the database passes its integrity
    check with every acknowledged write in it."""
    srv = make_server(data_dir=small_fs / "data")
    api = srv.api
    try:
        statuses, acked, filler = _fill_disk_and_create(srv, small_fs)
        assert statuses[-1] == 503, f"a create the disk cannot take should be 503, got {statuses[-1]}"
        wait_for(lambda: api.get("/readyz").status_code == 503, timeout=10, what="not ready while full")
    finally:
        (small_fs / "filler").unlink(missing_ok=True)
    later = wait_for(lambda: (r := api.post("/sessions", json={"userId": new_user("full")})).status_code == 201
                     and r.json(), timeout=10, what="a create to succeed after space was freed")
    record_token(later["token"])
    acked[later["sessionId"]] = later["token"]
    api.get("/readyz", expect=200)
    srv.stop()
    assert db_query(srv.data_dir, "PRAGMA integrity_check") == [("ok",)]
    have = {r[0] for r in db_query(srv.data_dir, "SELECT id FROM sessions")}
    assert not set(acked) - have, "acknowledged sessions are missing"


def _start_fails(args):
    r = subprocess.run([SESSIOND_BIN, "--listen", "127.0.0.1:0", *args], capture_output=True, text=True,
                       env=child_env(), timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode not in (0, -6, -11), f"exit {r.returncode}: {r.stderr}"
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return r


def test_a_read_only_or_unusable_data_dir_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {p.stderr.decode(errors='replace').strip()}")
    try:
        r = _start_fails(["--data-dir", str(ro)])
        assert "cannot" in r.stderr and str(ro) in r.stderr, r.stderr
        r = _start_fails(["--data-dir", str(ro / "sub")])
        assert "cannot" in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
    afile = tmp_path / "a-file"
    afile.write_text("not a directory")
    r = _start_fails(["--data-dir", str(afile)])
    assert "cannot" in r.stderr, r.stderr

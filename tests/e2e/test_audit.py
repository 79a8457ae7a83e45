"""The audit trail: lifecycle events in the store (GET /sessions/{id}/events,
GET /users/{userId}/events, admin scope) and the hash-chained audit log on
disk (`sessiond audit verify`), against the real binary."""
import hashlib
import json
import os
import secrets
import subprocess
import time
from urllib.parse import quote
import pytest

from conftest import (audit_log_records, SESSIOND_BIN, child_env, find_leaked_tokens, history_rows, new_user,
                      record_token, wait_for)


def _keys(tmp_path, **keys):
    """keys: id -> (key, scopes)."""
    p = tmp_path / "keys"
    p.write_text("".join(f"{i} {hashlib.sha256(k.encode()).hexdigest()} {s}\n" for i, (k, s) in keys.items()))
    return p


def _verify(*paths):
    return subprocess.run([SESSIOND_BIN, "audit", "verify", *map(str, paths)], capture_output=True, text=True,
                          env=child_env(), timeout=30, stdin=subprocess.DEVNULL)


def test_lifecycle_events_with_actor_and_address(make_server, tmp_path):
    app_key, ops_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    srv = make_server("--api-keys", str(_keys(tmp_path, app=(app_key, "sessions,validate"), ops=(ops_key, "admin"))),
                      "--refresh-grace", "0s")
    a = srv.api
    app_h, ops_h = {"X-Api-Key": app_key}, {"X-Api-Key": ops_key}
    user = new_user("audit")
    s = a.post("/sessions", json={"userId": user}, headers=app_h, expect=201).json()
    record_token(s["token"])
    sid = s["sessionId"]
    a.put(f"/sessions/{sid}", json={"data": {"a": 1}}, headers={**app_h, "If-Match": '"1"'}, expect=200)
    r = a.put(f"/sessions/{sid}", json={"mfa": True}, headers={**app_h, "If-Match": '"2"'}, expect=200).json()
    record_token(r["token"])
    ref = a.post(f"/sessions/{sid}/refresh", headers={**app_h, "Authorization": f"Bearer {r['token']}"},
                 expect=200).json()
    record_token(ref["token"])
    a.delete(f"/sessions/{sid}", headers=app_h, expect=204)

    # The session is gone, its history is not.
    a.get(f"/sessions/{sid}", headers=app_h, expect=404)
    body = a.get(f"/sessions/{sid}/events", headers=ops_h, expect=200).json()
    ev = body["events"]
    assert [e["event"] for e in ev] == ["created", "updated", "updated", "renewed", "refreshed", "revoked"], ev
    assert "next" not in body
    for e in ev:
        assert e["sessionId"] == sid and e["userId"] == user
        assert e["actor"] == "app", f"the key id that asked should be the actor: {e}"
        assert e["clientAddress"] == "127.0.0.1"
    assert ev[-1]["reason"] == "revoked"
    seqs = [e["seq"] for e in ev]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    # Scope: admin only; a sessions key gets 403, no key 401.
    a.get(f"/sessions/{sid}/events", headers=app_h, expect=403)
    a.get(f"/sessions/{sid}/events", expect=401)
    a.get(f"/users/{quote(user)}/events", headers=app_h, expect=403)


def test_user_events_pagination_and_errors(server):
    a = server.api
    user = new_user("audit")
    made = [a.create(user) for _ in range(3)]
    other = a.create(new_user("audit"))
    a.delete(f"/users/{quote(user)}/sessions", params={"except": made[0]["sessionId"]}, expect=200)
    first = a.get(f"/users/{quote(user)}/events", params={"limit": 2}, expect=200).json()
    assert len(first["events"]) == 2 and "next" in first
    rest = a.get(f"/users/{quote(user)}/events", params={"after": first["next"]}, expect=200).json()
    events = first["events"] + rest["events"]
    assert "next" not in rest
    assert [e["event"] for e in events] == ["created"] * 3 + ["revoked"] * 2, events
    assert {e["sessionId"] for e in events if e["event"] == "revoked"} == {m["sessionId"] for m in made[1:]}
    assert all(e["reason"] == "user_revoked" for e in events if e["event"] == "revoked")
    assert other["sessionId"] not in {e["sessionId"] for e in events}, "another user's events leaked in"
    # Unknown user: empty; unknown session: 404; bad paging: 400.
    assert a.get(f"/users/{new_user('nobody')}/events", expect=200).json() == {"events": []}
    a.get("/sessions/AAAAAAAAAAAAAAAAAAAAAA/events", expect=404)
    a.get("/sessions/not-an-id/events", expect=404)
    a.get(f"/users/{quote(user)}/events", params={"limit": 0}, expect=400)
    a.get(f"/users/{quote(user)}/events", params={"limit": 1001}, expect=400)
    a.get(f"/users/{quote(user)}/events", params={"after": "x1"}, expect=400)
    a.get(f"/users/{quote(user)}/events", params={"after": "-5"}, expect=400)
    a.post(f"/users/{quote(user)}/events", expect=405)


def test_events_newest_first(server):
    """order=desc lists the same events newest first, paged with 'before'
    (the 'next' cursor); a session's pages each cost their own length (its
    chain is walked from the cursor), a user's first page its newest events
    however long the history."""
    a = server.api
    user = new_user("audit")
    s1, s2 = a.create(user), a.create(user)
    for i in range(7):
        s = s1 if i % 2 else s2
        a.put(f"/sessions/{s['sessionId']}", json={"data": {"i": i}}, expect=200)
    a.delete(f"/sessions/{s1['sessionId']}", expect=204)

    def pages(path, **params):
        got, cursor = [], None
        while True:
            q = dict(params, limit=3)
            if cursor:
                q["before" if params.get("order") == "desc" else "after"] = cursor
            body = a.get(path, params=q, expect=200).json()
            assert len(body["events"]) <= 3
            got += body["events"]
            cursor = body.get("next")
            if not cursor:
                return got

    for path in (f"/sessions/{s1['sessionId']}/events", f"/sessions/{s2['sessionId']}/events",
                 f"/users/{quote(user)}/events"):
        asc = pages(path)
        desc = pages(path, order="desc")
        assert desc == list(reversed(asc)) and len(asc) >= 4, (path, asc, desc)
        assert [e["seq"] for e in desc] == sorted((e["seq"] for e in desc), reverse=True)
        assert pages(path, order="asc") == asc
        one = a.get(path, params={"order": "desc", "limit": 1}, expect=200).json()
        assert one["events"] == desc[:1] and one["next"] == str(desc[0]["seq"])
    newest = a.get(f"/users/{quote(user)}/events", params={"order": "desc", "limit": 1}).json()["events"][0]
    assert newest["event"] == "revoked" and newest["sessionId"] == s1["sessionId"]
    # A cursor of another session's event still pages this one correctly.
    other = pages(f"/sessions/{s1['sessionId']}/events", order="desc")
    mixed = a.get(f"/sessions/{s2['sessionId']}/events",
                  params={"order": "desc", "before": other[0]["seq"]}, expect=200).json()["events"]
    assert all(e["seq"] < other[0]["seq"] and e["sessionId"] == s2["sessionId"] for e in mixed) and mixed
    # Each order takes its own cursor; an unknown order is refused.
    path = f"/users/{quote(user)}/events"
    r = a.get(path, params={"order": "desc", "after": 5}, expect=400)
    assert "before" in r.json()["detail"]
    r = a.get(path, params={"before": 5}, expect=400)
    assert "after" in r.json()["detail"]
    a.get(path, params={"order": "newest"}, expect=400)
    a.get(path, params={"order": "desc", "before": "x"}, expect=400)
    a.get("/sessions/AAAAAAAAAAAAAAAAAAAAAA/events", params={"order": "desc"}, expect=404)


def test_expiry_eviction_and_reuse_are_recorded(make_server):
    srv = make_server("--sweep-interval", "100ms", "--max-sessions-per-user", "1", "--refresh-grace", "0s")
    a = srv.api
    # expired: by the sweeper, with the session's own expiry as the time
    s = a.create(new_user("audit"), ttlSeconds=1)
    wait_for(lambda: [e["event"] for e in a.get(f"/sessions/{s['sessionId']}/events").json()["events"]]
             == ["created", "expired"], timeout=15, what="an expired event from the sweeper")
    # evicted: the per-user cap ends the least recently seen session
    user = new_user("audit")
    old = a.create(user)
    a.create(user)
    ev = a.get(f"/sessions/{old['sessionId']}/events", expect=200).json()["events"]
    assert [e["event"] for e in ev] == ["created", "evicted"], ev
    # token reuse: the session is revoked and the theft recorded
    s = a.create(new_user("audit"))
    record_token(s["token"])
    new = a.post(f"/sessions/{s['sessionId']}/refresh", headers={"Authorization": f"Bearer {s['token']}"},
                 expect=200).json()
    record_token(new["token"])
    time.sleep(0.05)
    a.post(f"/sessions/{s['sessionId']}/refresh", headers={"Authorization": f"Bearer {s['token']}"}, expect=401)
    ev = a.get(f"/sessions/{s['sessionId']}/events", expect=200).json()["events"]
    assert [e["event"] for e in ev] == ["created", "refreshed", "token_reuse_detected", "revoked"], ev
    assert ev[-1]["reason"] == "token_reuse"


def test_audit_log_is_chained_complete_and_secret_free(make_server, tmp_path):
    key = secrets.token_urlsafe(32)
    srv = make_server("--api-keys", str(_keys(tmp_path, app=(key, "sessions,validate,admin"))))
    a = srv.api
    h = {"X-Api-Key": key}
    sids = []
    for _ in range(5):
        s = a.post("/sessions", json={"userId": new_user("audit")}, headers=h, expect=201).json()
        record_token(s["token"])
        sids.append(s["sessionId"])
    a.delete(f"/sessions/{sids[0]}", headers=h, expect=204)
    # failures that never reach the store are logged too
    a.post("/sessions/validate", headers={**h, "Authorization": "Bearer " + "A" * 43}, expect=200)
    a.post("/sessions", json={"userId": "x"}, headers={"X-Api-Key": "wrong-key"}, expect=401)
    a.post("/sessions", json={"userId": "x"}, expect=401)
    wait_for(lambda: sum(1 for r in audit_log_records(srv) if r["event"] in ("created", "revoked")) == 6, timeout=10,
             what="the store's events in the audit log")
    wait_for(lambda: {"validation_failed", "caller_auth_failed"} <= {r["event"] for r in audit_log_records(srv)},
             timeout=10, what="failures in the audit log")
    srv.stop()
    recs = audit_log_records(srv)
    created = {r["sessionId"] for r in recs if r["event"] == "created"}
    assert created == set(sids)
    fails = [r for r in recs if r["event"] == "caller_auth_failed"]
    assert {r["reason"] for r in fails} == {"unknown_key", "missing_key"}
    assert all(r["clientAddress"] == "127.0.0.1" for r in fails)
    vf = [r for r in recs if r["event"] == "validation_failed"]
    assert vf and vf[0]["reason"] == "unknown_token" and vf[0]["actor"] == "app"
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    raw = b"".join(p.read_bytes() for p in (srv.data_dir / "audit").iterdir())
    assert not find_leaked_tokens(raw), "a session token reached the audit log"
    assert key.encode() not in raw and b"wrong-key" not in raw, "an API key reached the audit log"
    v = _verify(srv.data_dir / "audit")
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"{len(recs)} records" in v.stdout


def test_verify_reports_the_first_broken_link(make_server, tmp_path):
    srv = make_server()
    for _ in range(4):
        srv.api.create(new_user("audit"))
    wait_for(lambda: len(audit_log_records(srv)) >= 4, timeout=10, what="4 records")
    srv.stop()
    log = srv.data_dir / "audit" / "audit.log"
    lines = log.read_text().splitlines(keepends=True)
    assert _verify(log).returncode == 0

    altered = tmp_path / "altered.log"  # change a field of record 2
    rec = json.loads(lines[1])
    altered.write_text(lines[0] + lines[1].replace(rec["userId"], rec["userId"] + "x") + "".join(lines[2:]))
    v = _verify(altered)
    assert v.returncode == 1 and f"{altered}:2:" in v.stdout and "altered" in v.stdout, v.stdout

    removed = tmp_path / "removed.log"  # drop record 2: record 3's prev no longer matches
    removed.write_text(lines[0] + "".join(lines[2:]))
    v = _verify(removed)
    assert v.returncode == 1 and f"{removed}:2:" in v.stdout and "broken link" in v.stdout, v.stdout

    swapped = tmp_path / "swapped.log"
    swapped.write_text(lines[0] + lines[2] + lines[1] + "".join(lines[3:]))
    assert _verify(swapped).returncode == 1

    garbage = tmp_path / "garbage.log"
    garbage.write_text(lines[0] + "hello\n")
    v = _verify(garbage)
    assert v.returncode == 1 and "not an audit record" in v.stdout
    assert _verify(tmp_path / "missing.log").returncode == 2
    assert _verify().returncode == 2  # usage


def test_crash_resumes_the_chain_and_logs_every_commit(make_server):
    srv = make_server()
    sids = set()
    for round_ in range(3):
        for _ in range(20):
            sids.add(srv.api.create(new_user("audit"))["sessionId"])
        srv.kill9()  # maybe before the audit thread logged the last commits
        log = srv.data_dir / "audit" / "audit.log"
        with open(log, "ab") as f:  # and a torn record, as a crash mid-write leaves
            f.write(b'{"seq":999,"time":"2026')
        srv.start()
    wait_for(lambda: {r["sessionId"] for r in audit_log_records(srv) if r["event"] == "created"} >= sids, timeout=10,
             what="every acknowledged create in the audit log after the crashes")
    srv.stop()
    assert "incomplete record" in srv.log_text()
    v = _verify(srv.data_dir / "audit")
    assert v.returncode == 0, v.stdout


def test_rotation_by_size_keeps_one_chain_and_prunes_old_files(make_server):
    srv = make_server("--audit-max-bytes", "4096")
    for round_ in range(1, 5):  # a file is rotated before a batch that finds it full
        for _ in range(15):  # ~5 KB of records
            srv.api.create(new_user("audit"))
        wait_for(lambda: len(audit_log_records(srv)) >= 15 * round_, timeout=10, what=f"{15 * round_} records")
    srv.stop()
    d = srv.data_dir / "audit"
    rotated = sorted(d.glob("audit-*.log"))
    assert len(rotated) >= 2, f"4 KB files should have rotated: {os.listdir(d)}"
    v = _verify(d)
    assert v.returncode == 0 and f"{len(rotated) + 1} files" in v.stdout, v.stdout
    # A file older than the retention is deleted at the next start.
    old = time.time() - 40 * 86400
    os.utime(rotated[0], (old, old))
    srv.start()
    wait_for(lambda: not rotated[0].exists(), timeout=5, what="the expired audit file to be pruned")
    assert rotated[1].exists()
    srv.stop()


def test_successful_validations_are_sampled_only_when_asked(make_server):
    quiet = make_server()
    loud = make_server("--audit-sample-validations", "1")
    for srv in (quiet, loud):
        s = srv.api.create(new_user("audit"))
        record_token(s["token"])
        for _ in range(5):
            assert srv.api.validate(s["token"])["isValid"] is True
        srv.api.validate("Z" * 43)  # a failure: always logged
        wait_for(lambda: any(r["event"] == "validation_failed" for r in audit_log_records(srv)), timeout=10,
                 what="the failed validation in the audit log")
    assert not [r for r in audit_log_records(quiet) if r["event"] == "validated"]
    sampled = [r for r in audit_log_records(loud) if r["event"] == "validated"]
    assert len(sampled) == 5 and sampled[0]["reason"] == "sampled" and sampled[0]["sessionId"]


@pytest.mark.sqlite_only("the embedded store's events are chained (audit_events.prev); PostgreSQL indexes them")
def test_the_purge_keeps_every_event_a_later_one_points_to(make_server, clock):
    """The purge of old events cuts a strict prefix of the log: events
    written out of time order (here a clock that stepped back an hour)
    wait for the younger ones before them, so no session's chain of events
    loses a link. The history row purged in the same pass says when it
    ran."""
    srv = make_server("--history-retention", "30m", "--sweep-interval", "200ms",
                      "--idle-timeout", "12h", env=clock.env)
    a = srv.api
    young = a.create(new_user("purge"))
    record_token(young["token"])
    clock.advance(-3600)
    old = a.create(new_user("purge"))
    record_token(old["token"])
    ended = a.create(new_user("purge"))
    record_token(ended["token"])
    a.delete(f"/sessions/{ended['sessionId']}", expect=204)
    clock.advance(3600 + 1200)  # the cut-off is now 10 minutes before the young event
    wait_for(lambda: history_rows(srv.data_dir, ended["sessionId"]) == [], timeout=30,
             what="the history row older than --history-retention 30m to be purged")
    assert [e["event"] for e in a.get(f"/sessions/{old['sessionId']}/events", expect=200).json()["events"]] \
        == ["created"]
    assert [e["event"] for e in a.get(f"/sessions/{young['sessionId']}/events", expect=200).json()["events"]] \
        == ["created"]

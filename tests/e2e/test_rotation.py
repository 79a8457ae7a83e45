"""Token rotation with reuse detection (RFC 9700 refresh-token rotation):
POST /sessions/{id}/refresh with the current token issues a new one and
retires the old; presenting a retired token inside --refresh-grace is a race
(409, nothing revoked); after it, theft: the session is revoked. The same
holds on every route that validates a token (POST /sessions/validate, GET
/auth, POST /introspect), where a thief uses a stolen token (issue 15)."""
import re
import secrets
import threading
import time

import pytest

from conftest import audit_log_records, history_rows, new_user, record_token, wait_for


def _metric(srv, name):
    text = srv.api.get("/metrics", expect=200).text
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def _refresh(api, sid, token, expect=None):
    return api.post(f"/sessions/{sid}/refresh", headers={"Authorization": f"Bearer {token}"},
                    expect=expect)


def test_rotation_issues_a_new_token_and_retires_the_old(make_server):
    # A window no run outlasts: the old token is presented below, and past
    # the window that would revoke the session (tested further down).
    srv = make_server("--refresh-grace", "1h")
    s = srv.api.create(new_user())
    r = _refresh(srv.api, s["sessionId"], s["token"], expect=200).json()
    assert r["token"] != s["token"] and len(r["token"]) == 43
    assert r["sessionId"] == s["sessionId"] and r["version"] == s["version"] + 1
    assert srv.api.validate(r["token"])["isValid"] is True
    assert srv.api.validate(s["token"])["isValid"] is False, "a rotated-away token must not validate"
    # Rotating again from the new token works; the chain goes on.
    r2 = _refresh(srv.api, s["sessionId"], r["token"], expect=200).json()
    assert srv.api.validate(r2["token"])["isValid"] is True
    # The new token survives a restart (the rotation was durable).
    srv.restart()
    assert srv.api.validate(r2["token"])["isValid"] is True


def test_reuse_inside_the_grace_window_is_a_race_not_theft(make_server):
    # A window no test run can outlast, so the answer does not depend on speed.
    srv = make_server("--refresh-grace", "1h")
    s = srv.api.create(new_user())
    new = _refresh(srv.api, s["sessionId"], s["token"], expect=200).json()["token"]
    _refresh(srv.api, s["sessionId"], s["token"], expect=409)
    assert srv.api.validate(new)["isValid"] is True
    srv.api.get(f"/sessions/{s['sessionId']}", expect=200)
    # The log names it as the audit trail does: a refresh, not a renewal.
    assert f"session_refreshed session={s['sessionId']}" in srv.log_text()


def test_reuse_after_the_grace_window_revokes_the_session(make_server):
    srv = make_server("--refresh-grace", "1s")
    s = srv.api.create(new_user())
    new = _refresh(srv.api, s["sessionId"], s["token"], expect=200).json()["token"]
    time.sleep(1.5)  # past the window, however long the refresh took
    r = _refresh(srv.api, s["sessionId"], s["token"], expect=401)
    assert "reuse" in r.json()["detail"]
    assert srv.api.validate(new)["isValid"] is False, "the thief's or victim's new token must die too"
    srv.api.get(f"/sessions/{s['sessionId']}", expect=404)
    assert history_rows(srv.data_dir, s["sessionId"])[0][3] == "token_reuse"
    assert "token_reuse_detected" in srv.log_text()
    assert _metric(srv, "sessiond_sessions_active") == 0, "the ended session is still counted as active"


def test_concurrent_rotations_exactly_one_wins(make_server):
    srv = make_server()
    s = srv.api.create(new_user())
    results = []
    lock = threading.Lock()
    barrier = threading.Barrier(32)

    def go():
        barrier.wait()
        r = _refresh(srv.api, s["sessionId"], s["token"])
        with lock:
            results.append(r.status_code)

    threads = [threading.Thread(target=go) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count(200) == 1, f"exactly one rotation must win: {sorted(results)}"
    assert set(results) <= {200, 409}, results


def test_refresh_errors(make_server):
    srv = make_server()
    s = srv.api.create(new_user())
    other = srv.api.create(new_user())
    srv.api.post(f"/sessions/{s['sessionId']}/refresh", expect=400)
    _refresh(srv.api, s["sessionId"], other["token"], expect=401)   # not this session's token
    _refresh(srv.api, s["sessionId"], "garbage", expect=401)
    _refresh(srv.api, "AAAAAAAAAAAAAAAAAAAAAA", s["token"], expect=404)
    # A mismatch revokes nothing.
    assert srv.api.validate(s["token"])["isValid"] is True


# ---- a retired token presented for validation (issue 15) ------------------

ROUTES = ("validate", "auth", "introspect")


def _accepted(srv, route, token):
    """Presents token on one validation route (without extending the session
    where the route allows); whether it was accepted."""
    a = srv.api
    if route == "validate":
        return a.validate(token, touch=False)["isValid"]
    if route == "auth":
        r = a.get("/auth", headers={"Authorization": f"Bearer {token}"}, expect=(200, 401))
        return r.status_code == 200
    r = a.post("/introspect", data=f"token={token}".encode(),
               headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=200)
    return r.json()["active"]


def _events(srv, sid):
    return srv.api.get(f"/sessions/{sid}/events", expect=200).json()["events"]


def _writes(srv):
    return _metric(srv, "sessiond_store_writes_total")


def _barrier(srv):
    """An acknowledged write: the one writer takes writes in order, so every
    write submitted before it (a validation's, not awaited) has landed."""
    record_token(srv.api.create(new_user("barrier"))["token"])


def _assert_revoked_for_reuse(srv, sid, new, old):
    """The session of sid was ended for token reuse, everywhere it shows."""
    # The revoking write is not awaited by the validation: it lands just after.
    wait_for(lambda: not srv.api.validate(new, touch=False)["isValid"], what="the new token to die")
    srv.api.get(f"/sessions/{sid}", expect=404)
    assert [r[3] for r in history_rows(srv.data_dir, sid)] == ["token_reuse"]
    ev = _events(srv, sid)
    assert [e["event"] for e in ev][-2:] == ["token_reuse_detected", "revoked"], ev
    assert ev[-1]["reason"] == "token_reuse" and ev[-2]["clientAddress"] == "127.0.0.1", ev
    wait_for(lambda: f"token_reuse_detected session={sid} address=127.0.0.1 action=revoked" in srv.log_text(),
             what="token_reuse_detected in the log")
    wait_for(lambda: any(r["event"] == "validation_failed" and r.get("sessionId") == sid
                         and r.get("reason") == "token_reuse" for r in audit_log_records(srv)),
             what="validation_failed (token_reuse) in the audit log")
    assert _metric(srv, "sessiond_sessions_active") == 0
    # Once ended, the retired token costs reads only: no write per presentation.
    before = _writes(srv)
    for route in ROUTES:
        assert not _accepted(srv, route, old)
    _barrier(srv)
    assert _writes(srv) == before + 1, "a retired token of an ended session caused a write"


@pytest.mark.parametrize("route", ROUTES)
def test_a_rotated_token_validated_after_the_window_revokes_the_session(make_server, route):
    """The thief presents the stolen token where it is used, not on refresh:
    past the grace window (0 s here, and a sleep that is only a lower bound)
    the answer is invalid and the session is revoked, as on refresh."""
    srv = make_server("--refresh-grace", "0s", "--sweep-interval", "1h")
    s = srv.api.create(new_user("reuse"))
    sid = s["sessionId"]
    new = _refresh(srv.api, sid, s["token"], expect=200).json()["token"]
    record_token(new)
    assert _accepted(srv, route, new)  # in cache mode, also fills the cache with the new token
    assert _accepted(srv, route, new)
    time.sleep(0.05)  # past the 0 s window, however long it takes
    assert not _accepted(srv, route, s["token"])
    _assert_revoked_for_reuse(srv, sid, new, s["token"])


def test_a_token_retired_by_raising_mfa_is_treated_the_same(make_server):
    srv = make_server("--refresh-grace", "0s", "--sweep-interval", "1h")
    s = srv.api.create(new_user("reuse"))
    sid = s["sessionId"]
    new = srv.api.put(f"/sessions/{sid}", json={"mfa": True}, expect=200).json()["token"]
    record_token(new)
    assert srv.api.validate(new, touch=False)["isValid"] is True
    time.sleep(0.05)
    assert srv.api.validate(s["token"], touch=False)["isValid"] is False
    _assert_revoked_for_reuse(srv, sid, new, s["token"])


def test_a_rotated_token_validated_inside_the_window_revokes_nothing(make_server):
    """Two tabs of one client racing a refresh: the old token is invalid,
    nothing is revoked, and nothing is written."""
    srv = make_server("--refresh-grace", "1h", "--sweep-interval", "1h")
    s = srv.api.create(new_user("reuse"))
    sid = s["sessionId"]
    new = _refresh(srv.api, sid, s["token"], expect=200).json()["token"]
    record_token(new)
    before = _writes(srv)
    for route in ROUTES:
        assert not _accepted(srv, route, s["token"])
    _barrier(srv)  # a revocation, had one been submitted, has landed by now
    assert _writes(srv) == before + 1, "a presentation inside the grace window caused a write"
    assert srv.api.validate(new, touch=False)["isValid"] is True
    srv.api.get(f"/sessions/{sid}", expect=200)
    assert [e["event"] for e in _events(srv, sid)] == ["created", "refreshed"]
    wait_for(lambda: any(r["event"] == "validation_failed" and r.get("sessionId") == sid
                         and r.get("reason") == "token_rotated" for r in audit_log_records(srv)),
             what="validation_failed (token_rotated) in the audit log")
    assert "token_reuse_detected" not in srv.log_text()


def test_unknown_tokens_cause_no_write(make_server):
    """Guessing must not reach the writer: an unknown token costs reads only
    (the store's writes_total does not move; --sweep-interval 1h keeps the
    sweeper's writes out)."""
    srv = make_server("--refresh-grace", "0s", "--sweep-interval", "1h")
    s = srv.api.create(new_user("reuse"))
    before = _writes(srv)
    for i in range(30):
        assert not _accepted(srv, ROUTES[i % 3], secrets.token_urlsafe(32))
    _barrier(srv)
    assert _writes(srv) == before + 1, "unknown tokens caused writes"
    assert srv.api.validate(s["token"], touch=False)["isValid"] is True

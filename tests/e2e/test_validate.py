"""Token / id validation, rolling expiry, idle and absolute timeouts, sweeper."""

import time
from datetime import timedelta

import pytest

from conftest import (active_row_count, fmt_time, history_rows, new_user, parse_time, sleep_until, utcnow,
                      wait_for)

INVALID = {"isValid": False, "expiry": None}


# ------------------------------------------------------------ basic shapes --
def test_validate_with_bearer_header(api):
    user = new_user()
    s = api.create(user)
    r = api.post("/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"}, expect=200)
    v = r.json()
    assert set(v) == {"isValid", "expiry", "sessionId", "userId", "authTime"}, \
        f"unexpected validate keys: {sorted(v)}"
    assert v["isValid"] is True and v["sessionId"] == s["sessionId"] and v["userId"] == user
    assert v["authTime"] == s["authTime"] == s["createdAt"], "authTime defaults to the creation time"
    parse_time(v["expiry"], "validate.expiry")
    assert parse_time(v["expiry"]) <= parse_time(s["absoluteExpiry"])


def test_validate_with_body_token(api):
    s = api.create()
    v = api.post("/sessions/validate", json={"token": s["token"]}, expect=200).json()
    assert v["isValid"] is True and v["sessionId"] == s["sessionId"]


def test_validate_touch_false_keeps_expiry(api):
    s = api.create()
    v = api.post("/sessions/validate", json={"token": s["token"]}, params={"touch": "false"}, expect=200).json()
    assert v["isValid"] is True and v["expiry"] == s["expiry"], \
        f"touch=false must not extend: create expiry {s['expiry']}, validate expiry {v['expiry']}"


MALFORMED_TOKENS = ["abc", "!" * 43, "A" * 42, "A" * 44, "A" * 2000, "a b", "A" * 43 + "=",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", "../../etc/passwd", "%00", "null"]


@pytest.mark.parametrize("tok", MALFORMED_TOKENS + ["UNKNOWN"])
def test_validate_malformed_or_unknown_token_is_invalid_not_error(api, tok):
    if tok == "UNKNOWN":
        tok = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"   # 43 chars, never issued
    v = api.post("/sessions/validate", headers={"Authorization": f"Bearer {tok}"}, expect=200).json()
    assert v == INVALID, f"bearer {tok[:20]!r}: want {INVALID}, got {v}"
    v = api.post("/sessions/validate", json={"token": tok}, expect=200).json()
    assert v == INVALID, f"body token {tok[:20]!r}: want {INVALID}, got {v}"


def test_validate_unicode_body_token_is_invalid(api):
    v = api.post("/sessions/validate", json={"token": "тест-токен-🙂"}, expect=200).json()
    assert v == INVALID


def test_validate_without_token_400(api):
    api.post("/sessions/validate", expect=400)                      # no header, no body
    api.post("/sessions/validate", json={}, expect=400)             # body without token


def test_validate_revoked_token(api):
    s = api.create()
    assert api.validate(s["token"])["isValid"] is True
    api.delete(f"/sessions/{s['sessionId']}", expect=204)
    assert api.validate(s["token"]) == INVALID
    assert api.validate(s["token"], touch=False) == INVALID


def test_validate_by_id(api):
    s = api.create()
    v = api.validate_id(s["sessionId"])
    assert v["isValid"] is True and v["expiry"] == s["expiry"], f"GET validate: {v} vs create expiry {s['expiry']}"
    assert "token" not in v


@pytest.mark.parametrize("sid", ["AAAAAAAAAAAAAAAAAAAAAA", "x", "A" * 100, "not_a_real-id"])
def test_validate_by_id_unknown_or_malformed(api, sid):
    r = api.get(f"/sessions/{sid}/validate", expect=200)
    assert r.json() == INVALID


def test_validate_extension_uses_the_sessions_own_idle_timeout(api):
    # ttlSeconds sets the session's idle timeout (clamped by --max-idle-timeout), so a
    # rolling extension of a ttlSeconds=5 session is now+5s, not the server default 1h.
    s = api.create(ttlSeconds=5)
    v = api.validate(s["token"])
    assert v["isValid"] is True
    ahead = (parse_time(v["expiry"]) - utcnow()).total_seconds()
    assert ahead <= 30, (f"validating a ttlSeconds=5 session extended it to {v['expiry']} "
                         f"({ahead:.0f}s ahead); the extension should use the session's idle timeout (5s)")


# ------------------------------------------------------- timing behaviours --
def test_rolling_extension_and_non_extending_checks(make_server):
    srv = make_server("--idle-timeout", "3s", "--sweep-interval", "200ms")
    api = srv.api
    s = api.create()
    sid, tok = s["sessionId"], s["token"]
    t0 = time.monotonic()
    e0 = parse_time(s["expiry"])
    prev = e0
    # Phase 1: a touch every 1 s keeps it alive past the original 3 s expiry
    # (each check is >= 2 s before the expiry set by the previous touch).
    for i in range(1, 5):
        sleep_until(t0 + i)
        v = api.validate(tok)
        assert v["isValid"] is True, f"touch #{i} ({i}s after create, 1s after the previous touch) must be valid: {v}"
        e = parse_time(v["expiry"])
        assert e > prev, f"touch #{i} must move expiry forward: {prev} -> {v['expiry']}"
        assert e <= parse_time(s["absoluteExpiry"])
        prev = e
    t_last = time.monotonic()
    e_last = prev
    assert e_last > e0 + timedelta(seconds=2), f"expiry should have rolled well past {e0}, is {e_last}"

    # Phase 2: GET .../validate and touch=false do not extend.
    sleep_until(t_last + 1.0)
    v = api.validate_id(sid)
    assert v["isValid"] is True and parse_time(v["expiry"]) == e_last, \
        f"GET /sessions/{{id}}/validate must not extend: {v} vs {e_last}"
    sleep_until(t_last + 1.5)
    v = api.validate(tok, touch=False)
    assert v["isValid"] is True and parse_time(v["expiry"]) == e_last, \
        f"POST validate?touch=false must not extend: {v} vs {e_last}"
    assert parse_time(api.get_session(sid).json()["expiry"]) == e_last
    # ... so the session lapses 3 s after the last touch (checked >= 1.2 s later).
    sleep_until(t_last + 4.2)
    assert api.validate_id(sid) == INVALID, "session must be invalid > 1 s after its expiry"
    assert api.validate(tok, touch=False) == INVALID
    assert api.validate(tok) == INVALID, "a touch must not resurrect an expired session"
    api.get(f"/sessions/{sid}", expect=404)


def _create_timed(api, **fields):
    t_send = time.monotonic()
    s = api.create(**fields)
    return s, t_send, time.monotonic()


def test_idle_expiry_and_sweeper_history(make_server):
    srv = make_server("--idle-timeout", "2s", "--sweep-interval", "200ms")
    api = srv.api
    user = new_user()
    s, t_send, t_recv = _create_timed(api, user_id=user)
    keep, _, _ = _create_timed(api, user_id=user, ttlSeconds=3600)
    sid = s["sessionId"]
    v1 = api.validate_id(sid)
    v2 = api.validate(s["token"], touch=False)
    g = api.get(f"/sessions/{sid}")
    if time.monotonic() <= t_send + 1.0:     # >= 1 s before the 2 s expiry
        assert v1["isValid"] is True and v2["isValid"] is True and g.status_code == 200, \
            f"session must be valid right after creation: {v1} {v2} {g.status_code}"
    sleep_until(t_recv + 3.2)               # >= 1.2 s after expiry
    assert api.validate_id(sid) == INVALID
    assert api.validate(s["token"], touch=False) == INVALID
    assert api.validate(s["token"]) == INVALID, "a touch must not resurrect an expired session"
    api.get(f"/sessions/{sid}", expect=404)
    api.put(f"/sessions/{sid}", json={"mfa": True}, expect=404)
    api.delete(f"/sessions/{sid}", expect=404)
    listed = [x["sessionId"] for x in api.list_user(user).json()["sessions"]]
    assert listed == [keep["sessionId"]], f"expired session must not be listed: {listed}"
    rows = wait_for(lambda: history_rows(srv.data_dir, sid), timeout=10,
                    what=f"sweeper to move {sid} to session_history")
    assert len(rows) == 1 and rows[0][3] == "expired" and rows[0][1] == user, \
        f"history row for an idle-expired session should have end_reason 'expired': {rows}"
    expiry_ms = int(parse_time(s["expiry"]).timestamp() * 1000)
    assert rows[0][2] >= expiry_ms, f"ended_at {rows[0][2]} is before the session's expiry {expiry_ms}"
    assert active_row_count(srv.data_dir, sid) == 0, "swept session must leave the sessions table"
    assert active_row_count(srv.data_dir, keep["sessionId"]) == 1
    assert history_rows(srv.data_dir, keep["sessionId"]) == []


def test_expired_is_invalid_even_without_sweeper(make_server):
    srv = make_server("--idle-timeout", "2s", "--sweep-interval", "1h")
    api = srv.api
    user = new_user()
    s, t_send, t_recv = _create_timed(api, user_id=user)
    sid = s["sessionId"]
    sleep_until(t_recv + 3.2)
    assert api.validate_id(sid) == INVALID, "expired (unswept) session must be invalid"
    assert api.validate(s["token"], touch=False) == INVALID
    assert api.validate(s["token"]) == INVALID, "a touch must not resurrect an expired (unswept) session"
    api.get(f"/sessions/{sid}", expect=404)
    api.put(f"/sessions/{sid}", json={"mfa": True}, expect=404)
    api.delete(f"/sessions/{sid}", expect=404)
    assert api.list_user(user).json()["sessions"] == [], "expired (unswept) session must not be listed"
    reasons = [r[3] for r in history_rows(srv.data_dir, sid)]
    assert "revoked" not in reasons, f"an expired session must not be recorded as revoked: {reasons}"


def test_absolute_timeout_caps_rolling_extension(make_server):
    srv = make_server("--idle-timeout", "2s", "--absolute-timeout", "3s", "--sweep-interval", "200ms")
    api = srv.api
    s, t_send, t_recv = _create_timed(api)
    abs_exp = parse_time(s["absoluteExpiry"])
    assert abs(((abs_exp - parse_time(s["createdAt"])).total_seconds()) - 3) <= 1
    clamped = 0
    went_invalid_at = None
    results = []
    while time.monotonic() < t_recv + 4.2:
        v = api.validate(s["token"])
        t_done = time.monotonic()
        results.append((round(t_done - t_send, 2), v))
        if t_done <= t_send + 2.0:          # >= 1 s before the absolute expiry
            assert v["isValid"] is True, f"valid before absoluteExpiry expected: {results}"
        if v["isValid"]:
            assert went_invalid_at is None, f"session became valid again after being invalid: {results}"
            e = parse_time(v["expiry"])
            assert e <= abs_exp, f"rolling extension went past absoluteExpiry {abs_exp}: {v}"
            clamped += e == abs_exp
        else:
            assert v == INVALID
            went_invalid_at = went_invalid_at or t_done
        time.sleep(0.5)
    sleep_until(t_recv + 4.2)
    assert api.validate(s["token"]) == INVALID, f"must be invalid > 1 s after absoluteExpiry: {results}"
    assert api.validate_id(s["sessionId"]) == INVALID
    api.get(f"/sessions/{s['sessionId']}", expect=404)
    assert clamped >= 1, f"some touch should have been clamped to absoluteExpiry {s['absoluteExpiry']}: {results}"
    rows = wait_for(lambda: history_rows(srv.data_dir, s["sessionId"]), timeout=10,
                    what="sweeper to record the absolute expiry")
    assert rows[0][3] == "expired", f"absolute-timeout end must be recorded as 'expired': {rows}"


# ------------------------------------------------ authentication context --
def test_auth_time_level_and_methods_for_step_up(api):
    """NIST 800-63B: the session keeps when and how the user authenticated;
    validation and introspection return it; no update can change it."""
    when = fmt_time(utcnow() - timedelta(minutes=5))
    s = api.create(new_user(), acr="aal2", amr=["pwd", "otp"], authTime=when)
    assert (s["acr"], s["amr"], parse_time(s["authTime"])) == ("aal2", ["pwd", "otp"], parse_time(when))
    v = api.validate(s["token"])
    assert v["acr"] == "aal2" and parse_time(v["authTime"]) == parse_time(when)
    r = api.post("/introspect", data=f"token={s['token']}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=200).json()
    assert r["acr"] == "aal2" and r["auth_time"] == int(parse_time(when).timestamp())
    for field, value in (("acr", "aal3"), ("amr", ["hwk"]), ("authTime", fmt_time(utcnow()))):
        r = api.put(f"/sessions/{s['sessionId']}", json={field: value}, expect=400)
        assert field in r.json()["detail"]
    g = api.get_session(s["sessionId"]).json()
    assert g["acr"] == "aal2" and g["amr"] == ["pwd", "otp"]
    for body, word in (({"acr": ""}, "acr"), ({"acr": "x" * 33}, "acr"), ({"amr": "pwd"}, "amr"),
                       ({"amr": ["a"] * 9}, "amr"), ({"amr": [""]}, "amr"),
                       ({"authTime": "yesterday"}, "authTime"),
                       ({"authTime": fmt_time(utcnow() + timedelta(hours=1))}, "authTime"),
                       ({"authTime": fmt_time(utcnow() - timedelta(days=2))}, "authTime")):
        r = api.post("/sessions", json={"userId": new_user(), **body}, expect=400)
        assert word in r.json()["detail"], (body, r.json())

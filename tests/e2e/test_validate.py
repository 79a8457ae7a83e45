"""Token / id validation, rolling expiry, idle and absolute timeouts, sweeper."""

import time
from datetime import timedelta

import pytest

from conftest import (active_row_count, fmt_time, history_rows, new_user, parse_time, utcnow,
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


@pytest.mark.no_prism("Prism answers malformed JSON itself and forwards a body it parsed written anew")
def test_validate_body_read_without_and_with_the_json_library_alike(api):
    """The usual body ({"token"}, optional "ipAddress"/"userAgent", plain
    strings) is read by a small strict reader; anything else goes to jansson
    as before. Both must answer alike: escapes decode, duplicates, unknown
    members, non-strings, bad JSON and bad UTF-8 are 400."""
    s = api.create()
    tok = s["token"]
    ctype = {"Content-Type": "application/json"}
    valid = [
        f' \r\n\t{{ "token" : "{tok}" }}\n',
        f'{{"userAgent":"curl/8 \u00e9","ipAddress":"203.0.113.9","token":"{tok}"}}',
        '{"token":"\\u%04x%s"}' % (ord(tok[0]), tok[1:]),          # an escape: jansson's path
    ]
    for body in valid:
        v = api.post("/sessions/validate", data=body.encode(), headers=ctype, expect=200).json()
        assert v["isValid"] is True and v["sessionId"] == s["sessionId"], f"{body!r}: {v}"
    refused = {
        f'{{"token":"{tok}","token":"{tok}"}}': "duplicate",
        f'{{"userAgent":"a","token":"{tok}","userAgent":"a"}}': "duplicate",
        f'{{"token":"{tok}","ipaddress":"1.2.3.4"}}': "may only hold",
        f'{{"token":"{tok}","userAgent":5}}': "may only hold",
        f'{{"token":"{tok}"}} x': "not valid JSON",
        f'{{"token":"{tok}",}}': "not valid JSON",
        f'{{"token":"{tok}\u0001"}}': "not valid JSON",                    # a raw control byte
        f'["{tok}"]': "must be a JSON object",
        '{}': "no token",
    }
    for body, why in refused.items():
        r = api.post("/sessions/validate", data=body.encode(), headers=ctype, expect=400)
        assert why in r.json()["detail"], f"{body!r}: {r.json()['detail']}"
    bad_utf8 = b'{"token":"' + tok.encode() + b'","userAgent":"\xff"}'
    r = api.post("/sessions/validate", data=bad_utf8, headers=ctype, expect=400)
    assert "not valid JSON" in r.json()["detail"]
    r = api.post("/sessions/validate", data=f'{{"token":"{tok}"}}'.encode(),
                 headers={**ctype, "Authorization": f"Bearer {tok}"}, expect=400)
    assert "not both" in r.json()["detail"]


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
    # rolling extension of a ttlSeconds=600 session is now+10min, not the server default 1h.
    s = api.create(ttlSeconds=600)
    v = api.validate(s["token"])
    assert v["isValid"] is True
    ahead = (parse_time(v["expiry"]) - utcnow()).total_seconds()
    assert ahead <= 900, (f"validating a ttlSeconds=600 session extended it to {v['expiry']} "
                          f"({ahead:.0f}s ahead); the extension should use the session's idle timeout (10 min)")


# ------------------------------------------------------- timing behaviours --
# These run the server on a wall clock the test moves (conftest.ShiftedClock):
# timeouts are minutes long and the clock jumps by minutes, so the real
# seconds a slow machine takes between two requests never decide an answer.
MIN = 60


def _landed(api, sid, expiry):
    """A touch is written behind the reply (never waited for). Real clients
    are minutes apart; a test that jumps the clock right after one must first
    wait for the write to land."""
    wait_for(lambda: api.get_session(sid).json()["expiry"] == expiry, timeout=30,
             what=f"the touch of {sid} to {expiry} to be stored")


def test_rolling_extension_and_non_extending_checks(make_server, clock):
    srv = make_server("--idle-timeout", "1h", "--sweep-interval", "200ms", env=clock.env)
    api = srv.api
    s = api.create()
    sid, tok = s["sessionId"], s["token"]
    e0 = parse_time(s["expiry"])
    prev = e0
    # Phase 1: a touch every 40 min keeps it alive well past the original 1 h expiry.
    for i in range(1, 5):
        clock.advance(40 * MIN)
        v = api.validate(tok)
        assert v["isValid"] is True, f"touch #{i} (40 min after the previous one, idle 1 h) must be valid: {v}"
        e = parse_time(v["expiry"])
        assert e > prev, f"touch #{i} must move expiry forward: {prev} -> {v['expiry']}"
        assert e <= parse_time(s["absoluteExpiry"])
        assert abs((e - clock.now()).total_seconds() - 3600) < 60, f"touch #{i}: expiry is not now + 1 h: {v}"
        _landed(api, sid, v["expiry"])
        prev = e
    e_last = prev
    assert e_last > e0 + timedelta(minutes=150), f"expiry should have rolled well past {e0}, is {e_last}"

    # Phase 2: GET .../validate and touch=false do not extend.
    clock.advance(20 * MIN)
    v = api.validate_id(sid)
    assert v["isValid"] is True and parse_time(v["expiry"]) == e_last, \
        f"GET /sessions/{{id}}/validate must not extend: {v} vs {e_last}"
    clock.advance(20 * MIN)
    v = api.validate(tok, touch=False)
    assert v["isValid"] is True and parse_time(v["expiry"]) == e_last, \
        f"POST validate?touch=false must not extend: {v} vs {e_last}"
    assert parse_time(api.get_session(sid).json()["expiry"]) == e_last
    # ... so the session lapses 1 h after the last touch.
    clock.advance(30 * MIN)
    assert api.validate_id(sid) == INVALID, "session must be invalid 10 min after its expiry"
    assert api.validate(tok, touch=False) == INVALID
    assert api.validate(tok) == INVALID, "a touch must not resurrect an expired session"
    api.get(f"/sessions/{sid}", expect=404)


def test_idle_expiry_and_sweeper_history(make_server, clock):
    srv = make_server("--idle-timeout", "1h", "--sweep-interval", "200ms", env=clock.env)
    api = srv.api
    user = new_user()
    s = api.create(user_id=user)
    keep = api.create(user_id=user, ttlSeconds=6 * 3600)
    sid = s["sessionId"]
    clock.advance(50 * MIN)  # 10 min before the expiry
    v1 = api.validate_id(sid)
    v2 = api.validate(s["token"], touch=False)
    g = api.get(f"/sessions/{sid}")
    assert v1["isValid"] is True and v2["isValid"] is True and g.status_code == 200, \
        f"session must be valid before its idle timeout: {v1} {v2} {g.status_code}"
    clock.advance(20 * MIN)  # 10 min after it
    assert api.validate_id(sid) == INVALID
    assert api.validate(s["token"], touch=False) == INVALID
    assert api.validate(s["token"]) == INVALID, "a touch must not resurrect an expired session"
    api.get(f"/sessions/{sid}", expect=404)
    api.put(f"/sessions/{sid}", json={"mfa": True}, expect=404)
    api.delete(f"/sessions/{sid}", expect=404)
    listed = [x["sessionId"] for x in api.list_user(user).json()["sessions"]]
    assert listed == [keep["sessionId"]], f"expired session must not be listed: {listed}"
    rows = wait_for(lambda: history_rows(srv.data_dir, sid), timeout=30,
                    what=f"sweeper to move {sid} to session_history")
    assert len(rows) == 1 and rows[0][3] == "expired" and rows[0][1] == user, \
        f"history row for an idle-expired session should have end_reason 'expired': {rows}"
    expiry_ms = int(parse_time(s["expiry"]).timestamp() * 1000)
    assert rows[0][2] >= expiry_ms, f"ended_at {rows[0][2]} is before the session's expiry {expiry_ms}"
    assert active_row_count(srv.data_dir, sid) == 0, "swept session must leave the sessions table"
    assert active_row_count(srv.data_dir, keep["sessionId"]) == 1
    assert history_rows(srv.data_dir, keep["sessionId"]) == []


def test_expired_is_invalid_even_without_sweeper(make_server, clock):
    srv = make_server("--idle-timeout", "1h", "--sweep-interval", "1h", env=clock.env)
    api = srv.api
    user = new_user()
    s = api.create(user_id=user)
    sid = s["sessionId"]
    clock.advance(70 * MIN)  # the sweeper's next run is an hour of real time away
    assert api.validate_id(sid) == INVALID, "expired (unswept) session must be invalid"
    assert api.validate(s["token"], touch=False) == INVALID
    assert api.validate(s["token"]) == INVALID, "a touch must not resurrect an expired (unswept) session"
    api.get(f"/sessions/{sid}", expect=404)
    api.put(f"/sessions/{sid}", json={"mfa": True}, expect=404)
    api.delete(f"/sessions/{sid}", expect=404)
    assert api.list_user(user).json()["sessions"] == [], "expired (unswept) session must not be listed"
    reasons = [r[3] for r in history_rows(srv.data_dir, sid)]
    assert "revoked" not in reasons, f"an expired session must not be recorded as revoked: {reasons}"


def test_absolute_timeout_caps_rolling_extension(make_server, clock):
    srv = make_server("--idle-timeout", "40m", "--absolute-timeout", "1h", "--sweep-interval", "200ms",
                      env=clock.env)
    api = srv.api
    s = api.create()
    abs_exp = parse_time(s["absoluteExpiry"])
    assert abs((abs_exp - parse_time(s["createdAt"])).total_seconds() - 3600) <= 1
    # Touches every 15 min: the first extends to now + 40 min, the later ones
    # would pass absoluteExpiry and are clamped to it.
    clamped = 0
    for i in range(1, 4):
        clock.advance(15 * MIN)
        v = api.validate(s["token"])
        assert v["isValid"] is True, f"touch #{i} ({15 * i} min after create) must be valid: {v}"
        e = parse_time(v["expiry"])
        assert e <= abs_exp, f"rolling extension went past absoluteExpiry {abs_exp}: {v}"
        clamped += e == abs_exp
        _landed(api, s["sessionId"], v["expiry"])
    assert clamped == 2, f"the touches at 30 and 45 min must be clamped to absoluteExpiry {abs_exp}"
    clock.advance(20 * MIN)  # 5 min past the absolute expiry, 20 min after the last touch
    assert api.validate(s["token"]) == INVALID, "must be invalid after absoluteExpiry"
    assert api.validate_id(s["sessionId"]) == INVALID
    api.get(f"/sessions/{s['sessionId']}", expect=404)
    rows = wait_for(lambda: history_rows(srv.data_dir, s["sessionId"]), timeout=30,
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


def test_the_sweeper_keeps_its_interval_when_the_wall_clock_steps(make_server, clock):
    # The sweeper waits on the monotonic clock: a wall clock stepped forward
    # by an hour (NTP, an operator; here the shim) must not put it to sleep
    # for that hour (it did while it timed its waits on CLOCK_REALTIME).
    srv = make_server("--sweep-interval", "200ms", env=clock.env)
    api = srv.api
    clock.advance(3600)
    # Let the sweeper run once on the stepped clock (a slow machine only makes
    # this test weaker, never wrong: correct code passes whenever it runs).
    time.sleep(1)
    s = api.create(ttlSeconds=60)
    clock.advance(2 * MIN)
    rows = wait_for(lambda: history_rows(srv.data_dir, s["sessionId"]), timeout=30,
                    what="the sweeper to end a session after the wall clock stepped")
    assert rows[0][3] == "expired", rows


def test_connection_timeouts_keep_to_real_time_when_the_wall_clock_steps(make_server, clock):
    # Idle and request timeouts are measured on the monotonic clock: a wall
    # clock stepped forward by an hour must not close every idle keep-alive
    # connection (it did, and a proxy's pooled connection then hung up), nor
    # one stepped back keep a slow client's connection open past its timeout.
    from conftest import RawConn, http_request_bytes
    srv = make_server("--connection-timeout", "30s", env=clock.env)
    c = RawConn(srv.port)
    try:
        c.send(http_request_bytes("GET", "/healthz"))
        assert c.read_response().status == 200
        clock.advance(3600)
        time.sleep(1.5)  # the timeout scan runs every second (a lower bound only)
        c.send(http_request_bytes("GET", "/healthz"))
        r = c.read_response()
        assert r is not None and r.status == 200, "an idle keep-alive connection was closed by a clock step"
    finally:
        c.close()

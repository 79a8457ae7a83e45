"""Token rotation with reuse detection (RFC 9700 refresh-token rotation):
POST /sessions/{id}/refresh with the current token issues a new one and
retires the old; presenting a retired token inside --refresh-grace is a race
(409, nothing revoked); after it, theft: the session is revoked."""
import re
import threading
import time

from conftest import history_rows, new_user


def _metric(srv, name):
    text = srv.api.get("/metrics", expect=200).text
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def _refresh(api, sid, token, expect=None):
    return api.post(f"/sessions/{sid}/refresh", headers={"Authorization": f"Bearer {token}"},
                    expect=expect)


def test_rotation_issues_a_new_token_and_retires_the_old(make_server):
    srv = make_server("--refresh-grace", "1s")
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

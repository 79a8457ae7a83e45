"""Guessing defence: failed validations (unknown, expired, malformed tokens)
are rate-limited per client address with a token bucket (429 with
Retry-After), in bounded memory; the moment an address is throttled is
audited."""
import socket
import time

from conftest import audit_log_records, new_user, record_token, wait_for


def _raw_validate(port, token, source):
    """POST /sessions/validate from a given loopback source address."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall((f"POST /sessions/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                   "Content-Length: 0\r\nConnection: close\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def _empty_bucket(a, token="B" * 43, most=10):
    """Presents a bad token until the address's bucket is empty (429);
    returns how many were allowed and the 429 response."""
    for allowed in range(most + 1):
        r = a.post("/sessions/validate", headers={"Authorization": "Bearer " + token})
        if r.status_code == 429:
            return allowed, r
        assert r.status_code == 200 and r.json()["isValid"] is False, r.text
    raise AssertionError(f"no 429 after {most} failed validations")


def _blocked(a, send):
    """True once `send` answers 429 right after the bucket was emptied. The
    bucket refills one token a second: a stall between emptying it and the
    request may let one through, so empty it again and retry (a real defect
    fails every time)."""
    for _ in range(5):
        _empty_bucket(a)
        r = send()
        if r.status_code == 429:
            return True
    return False


def test_failed_validations_are_throttled_per_address(make_server):
    srv = make_server("--failed-validation-rate", "1", "--failed-validation-burst", "5")
    a = srv.api
    good = a.create(new_user("thr"))
    record_token(good["token"])
    t0 = time.monotonic()
    allowed, r = _empty_bucket(a)
    # The burst, plus at most one token for each second this took.
    assert 5 <= allowed <= 5 + int(time.monotonic() - t0) + 1, allowed
    assert r.headers["Retry-After"] == "1"
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "too many failed validations" in r.json()["detail"]
    # The address is blocked for every way of presenting a token, valid or not.
    bearer = {"Authorization": f"Bearer {good['token']}"}
    assert _blocked(a, lambda: a.post("/sessions/validate", headers=bearer))
    assert _blocked(a, lambda: a.get(f"/sessions/{good['sessionId']}/validate"))
    assert _blocked(a, lambda: a.get("/auth", headers=bearer))
    assert _blocked(a, lambda: a.post("/introspect", data=f"token={good['token']}",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"}))
    # Another client address is not affected.
    assert _raw_validate(srv.port, good["token"], "127.0.0.2") == 200
    # Other endpoints are not throttled.
    a.get(f"/sessions/{good['sessionId']}", expect=200)
    # One token a second refills: after the Retry-After delay a try is allowed again.
    time.sleep(1.1)
    assert a.validate(good["token"])["isValid"] is True
    # Successes do not consume tokens, failures do until the bucket is empty
    # again. How many got through depends on how long this took (one a second,
    # at most the burst), so count them rather than assume one.
    allowed, _ = _empty_bucket(a, "C" * 43, most=5)
    assert allowed >= 1, "the refilled token was not available"
    # The throttling is logged and audited once per time the bucket empties, never a token.
    log = srv.log_text()
    assert "client_throttled address=127.0.0.1" in log

    def audited():
        recs = audit_log_records(srv)
        return [r for r in recs if r["event"] == "client_throttled"]
    recs = wait_for(lambda: len(audited()) >= 2 and audited(), timeout=5, what="client_throttled records")
    assert all(r["clientAddress"] == "127.0.0.1" for r in recs)


def test_wrong_tokens_on_refresh_count_too(make_server):
    srv = make_server("--failed-validation-rate", "1", "--failed-validation-burst", "3")
    a = srv.api
    s = a.create(new_user("thr"))
    record_token(s["token"])
    other = a.create(new_user("thr"))
    record_token(other["token"])
    def wrong():  # a real token of another session: 401 mismatch, until the bucket is empty
        return a.post(f"/sessions/{s['sessionId']}/refresh", headers={"Authorization": f"Bearer {other['token']}"})
    t0 = time.monotonic()
    wrongs = 0
    while (r := wrong()).status_code == 401:
        wrongs += 1
        assert wrongs <= 3 + int(time.monotonic() - t0) + 1, "wrong tokens on refresh are not counted"
    assert r.status_code == 429 and wrongs >= 3, (wrongs, r.status_code)
    # With the bucket empty, even the right token is refused (a stall may refill one: retry).
    for _ in range(5):
        while wrong().status_code == 401:
            pass
        if a.post(f"/sessions/{s['sessionId']}/refresh",
                  headers={"Authorization": f"Bearer {s['token']}"}).status_code == 429:
            break
    else:
        raise AssertionError("the right token was not refused with the bucket empty")


def test_throttling_can_be_turned_off(make_server):
    srv = make_server("--failed-validation-rate", "0")
    for _ in range(300):
        assert srv.api.validate("D" * 43)["isValid"] is False

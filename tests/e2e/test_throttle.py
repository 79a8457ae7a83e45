"""Guessing defence: failed validations (unknown, expired, malformed tokens)
are rate-limited per client address with a token bucket (429 with
Retry-After), in bounded memory; the moment an address is throttled is
audited."""
import json
import socket
import time

from conftest import new_user, record_token, wait_for


def _raw_validate(port, token, source):
    """POST /sessions/validate from a given loopback source address."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall((f"POST /sessions/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                   "Content-Length: 0\r\nConnection: close\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_failed_validations_are_throttled_per_address(make_server):
    srv = make_server("--failed-validation-rate", "1", "--failed-validation-burst", "5")
    a = srv.api
    good = a.create(new_user("thr"))
    record_token(good["token"])
    for i in range(5):
        assert a.validate("B" * 43)["isValid"] is False
    r = a.post("/sessions/validate", headers={"Authorization": "Bearer " + "B" * 43}, expect=429)
    assert r.headers["Retry-After"] == "1"
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "too many failed validations" in r.json()["detail"]
    # The address is blocked for every way of presenting a token, valid or not.
    a.post("/sessions/validate", headers={"Authorization": f"Bearer {good['token']}"}, expect=429)
    a.get(f"/sessions/{good['sessionId']}/validate", expect=429)
    a.get("/auth", headers={"Authorization": f"Bearer {good['token']}"}, expect=429)
    a.post("/introspect", data=f"token={good['token']}",
           headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=429)
    # Another client address is not affected.
    assert _raw_validate(srv.port, good["token"], "127.0.0.2") == 200
    # Other endpoints are not throttled.
    a.get(f"/sessions/{good['sessionId']}", expect=200)
    # One token a second refills: after the Retry-After delay a try is allowed again.
    time.sleep(1.1)
    assert a.validate(good["token"])["isValid"] is True
    # Successes do not consume tokens, the next failure does (and empties it again).
    assert a.validate("C" * 43)["isValid"] is False
    a.post("/sessions/validate", headers={"Authorization": "Bearer " + "C" * 43}, expect=429)
    # The throttling is logged and audited once per time the bucket empties, never a token.
    log = srv.log_text()
    assert "client_throttled address=127.0.0.1" in log

    def audited():
        recs = [json.loads(x) for x in (srv.data_dir / "audit" / "audit.log").read_text().splitlines()]
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
    for _ in range(3):  # a real token of another session: 401 mismatch
        a.post(f"/sessions/{s['sessionId']}/refresh", headers={"Authorization": f"Bearer {other['token']}"},
               expect=401)
    a.post(f"/sessions/{s['sessionId']}/refresh", headers={"Authorization": f"Bearer {s['token']}"}, expect=429)


def test_throttling_can_be_turned_off(make_server):
    srv = make_server("--failed-validation-rate", "0")
    for _ in range(300):
        assert srv.api.validate("D" * 43)["isValid"] is False

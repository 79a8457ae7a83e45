"""Issue 18's minting target: a minted access token is handed out again
while most of its lifetime remains (--jwt-reuse; docs/tokens.md, "Reusing
a minted token"), never across a change of what it says, never past its
session's expiry, and never to a session that is not valid.

Everything is decided by the server's clocks and versions, not by how fast
the test runs: the reuse point is crossed with the `clock` fixture (the
server's wall clock moved forward), and a SIGHUP is awaited by its visible
effect (the JWKS, or the log line)."""
import os
import signal
import subprocess

import pytest

from conftest import new_user, parse_time, wait_for
from test_jwt import (AUDIENCE, ISSUER, header_and_claims, keyfile, keygen, mint, verify,  # noqa: F401
                      write_keys)

LIFETIME = 300


def validate_with_token(api, session_token):
    """POST /sessions/validate?accessToken=true: the valid answer."""
    r = api.post("/sessions/validate", params={"accessToken": "true"},
                 headers={"Authorization": f"Bearer {session_token}"}, expect=200).json()
    assert r["isValid"], r
    return r


def token_of(api, session_token):
    """(accessToken, accessTokenExpiresIn) of a validation."""
    r = validate_with_token(api, session_token)
    return r["accessToken"], r["accessTokenExpiresIn"]


def reuse_counts(api):
    out = {}
    for line in api.get("/metrics", expect=200).text.splitlines():
        if line.startswith("sessiond_jwt_reuse_total{"):
            out[line.split('"')[1]] = int(line.split()[-1])
    return out


@pytest.fixture
def srv(make_server, keyfile, clock):
    return make_server("--jwt-keys", keyfile, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
                       "--jwt-claims", "deviceId,data", env=clock.env)


def test_repeated_asks_get_the_same_token(srv):
    api = srv.api
    s = api.create(new_user(), deviceId="phone-1", data={"plan": "free"})
    first, ttl = token_of(api, s["token"])
    assert ttl == LIFETIME
    again = [token_of(api, s["token"]) for _ in range(3)]
    t = mint(api, s["token"])  # POST /sessions/token shares the cache
    assert all(tok == first for tok, _ in again) and t["accessToken"] == first
    # expiresIn is what the token has left: at least 80 % of its lifetime (--jwt-reuse 0.2)
    assert all(0.8 * LIFETIME <= left <= LIFETIME for _, left in again)
    assert 0.8 * LIFETIME <= t["expiresIn"] <= LIFETIME
    assert reuse_counts(api) == {"hit": 4, "miss": 1, "stale": 0}
    # it is one token, which verifies as any other
    res = verify(srv, first)[0]
    assert res["ok"], res
    # another session has its own
    other = api.create(new_user())
    assert token_of(api, other["token"])[0] != first


def test_a_change_of_the_session_gets_a_new_token(srv):
    api = srv.api
    s = api.create(new_user(), deviceId="phone-1", data={"plan": "free"})
    a, _ = token_of(api, s["token"])
    # an update: the claims it carries (--jwt-claims data) change
    api.put(f"/sessions/{s['sessionId']}", json={"data": {"plan": "pro"}}, headers={"If-Match": '"1"'},
            expect=200)
    b, _ = token_of(api, s["token"])
    assert b != a and header_and_claims(b)[1]["data"] == {"plan": "pro"}
    assert token_of(api, s["token"])[0] == b  # and that one is handed out again
    # a renewal (mfa raised): the new session token gets a new access token
    r = api.put(f"/sessions/{s['sessionId']}", json={"mfa": True}, headers={"If-Match": '"2"'},
                expect=200).json()
    c, _ = token_of(api, r["token"])
    assert c not in (a, b)
    # a rotation (refresh)
    fresh = api.post(f"/sessions/{s['sessionId']}/refresh", headers={"Authorization": f"Bearer {r['token']}"},
                     expect=200).json()
    d, _ = token_of(api, fresh["token"])
    assert d not in (a, b, c)
    assert len({header_and_claims(t)[1]["jti"] for t in (a, b, c, d)}) == 4
    assert all(r["ok"] for r in verify(srv, b, c, d))


def test_a_key_rotation_or_any_reload_gets_a_new_token(srv, keyfile):
    api = srv.api
    s = api.create(new_user())
    a, _ = token_of(api, s["token"])
    # SIGHUP with the same file: the reload alone retires what was kept
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: srv.log_text().count("JWT keys reloaded") == 1, what="the reload")
    b, _ = token_of(api, s["token"])
    assert b != a and header_and_claims(b)[0]["kid"] == "ed-1"
    assert token_of(api, s["token"])[0] == b
    # a new signing key: the next token carries its kid
    write_keys(keyfile, keygen("EdDSA", "ed-1"), keygen("ES256", "es-2"))
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: {k["kid"] for k in api.get("/.well-known/jwks.json").json()["keys"]} == {"ed-1", "es-2"},
             what="the new key")
    c, _ = token_of(api, s["token"])
    assert header_and_claims(c)[0] == {"alg": "ES256", "kid": "es-2", "typ": "at+jwt"}
    assert verify(srv, c)[0]["ok"]


def test_the_reuse_point_and_the_session_bound_the_token(make_server, keyfile, clock):
    srv = make_server("--jwt-keys", keyfile, "--absolute-timeout", "200s", env=clock.env)
    api = srv.api
    s = api.create(new_user())
    absolute = parse_time(s["absoluteExpiry"]).timestamp()
    a, left = token_of(api, s["token"])
    ca = header_and_claims(a)[1]
    assert ca["exp"] <= absolute and left <= 200  # the session ends before --jwt-lifetime
    clock.advance(20)  # within 20 % of the token's ~200 s: the same token
    assert token_of(api, s["token"])[0] == a
    clock.advance(30)  # 50 s: past its reuse point, a new one
    b, left = token_of(api, s["token"])
    cb = header_and_claims(b)[1]
    assert b != a and cb["iat"] >= ca["iat"] + 50 and cb["exp"] <= absolute
    assert left <= absolute - cb["iat"]
    # and a session with an idle timeout shorter than the token's lifetime:
    # every token handed out ends with the session as the validation that
    # hands it out finds it (its rolling expiry included)
    idle = api.create(new_user(), ttlSeconds=40)
    seen = []
    for step in (0, 1, 8):  # 20 % of 40 s: reused up to 8 s after it was minted
        clock.advance(step)
        r = validate_with_token(api, idle["token"])
        tok, left = r["accessToken"], r["accessTokenExpiresIn"]
        assert header_and_claims(tok)[1]["exp"] <= parse_time(r["expiry"]).timestamp() and left <= 40
        seen.append(tok)
    assert seen[0] == seen[1] != seen[2]


def test_no_token_for_a_session_that_is_no_longer_valid(srv, clock):
    api = srv.api
    user = new_user()
    gone, kept, cut = api.create(user), api.create(user), api.create(new_user())
    for s in (gone, kept, cut):
        token_of(api, s["token"])
    api.delete(f"/sessions/{gone['sessionId']}", expect=204)
    r = api.post("/sessions/validate", params={"accessToken": "true"},
                 headers={"Authorization": f"Bearer {gone['token']}"}, expect=200).json()
    assert r == {"isValid": False, "expiry": None}
    mint(api, gone["token"], expect=401)
    api.delete(f"/users/{user}/sessions", expect=(200, 204))
    mint(api, kept["token"], expect=401)
    # the global not-before cuts the third one off
    api.post("/admin/not-before", json={"notBefore": "now"}, expect=200)
    mint(api, cut["token"], expect=401)
    # and an expired one
    short = api.create(new_user(), ttlSeconds=30)
    token_of(api, short["token"])
    clock.advance(31)
    mint(api, short["token"], expect=401)
    counts = reuse_counts(api)
    assert counts["hit"] == 0 and counts["miss"] == 4


def test_reuse_can_be_turned_off(make_server, keyfile):
    srv = make_server("--jwt-keys", keyfile, "--jwt-reuse", "0")
    s = srv.api.create(new_user())
    a, b = token_of(srv.api, s["token"])[0], token_of(srv.api, s["token"])[0]
    assert a != b and header_and_claims(a)[1]["jti"] != header_and_claims(b)[1]["jti"]
    assert reuse_counts(srv.api) == {}


@pytest.mark.parametrize("args", [("--jwt-reuse", "0.6"), ("--jwt-reuse", "-1"),
                                  ("--jwt-reuse-max-mb", "0")])
def test_settings_out_of_bounds_are_refused(make_server, keyfile, args):
    srv = make_server("--jwt-keys", keyfile, *args, start=False)
    r = subprocess.run(srv.command(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and args[0].lstrip("-") in r.stderr, r.stderr

"""Issue 18: JWT access tokens derived from sessions, their keys and the
revocation feed (docs/tokens.md).

Tokens are minted by the real binary on both routes (POST /sessions/token,
POST /sessions/{id}/refresh?accessToken=true) and verified by an independent
verifier, panva/jose from npm (tests/jwt/verify.mjs: createRemoteJWKSet on
the server's JWKS URL, jwtVerify with issuer and audience). Key rotation
goes through the key file and SIGHUP; the revocation feed is checked after
DELETE, user-wide and bulk revocation, eviction at the per-user cap and
token reuse. Nothing waits on time: expiry moves with the `clock` fixture,
and a reload is awaited by its visible effect on the JWKS."""
import base64
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import pgserver
from conftest import PG_MODE, SESSIOND_BIN, new_user, parse_time, pg, wait_for

REPO = Path(__file__).resolve().parents[2]
VERIFIER = REPO / "tests" / "jwt" / "verify.mjs"
ISSUER = "https://sessiond.test"
AUDIENCE = "orders-api"


def keygen(alg="EdDSA", kid=None, nxt=False):
    """A --jwt-keys line from `sessiond jwk generate`."""
    cmd = [SESSIOND_BIN, "jwk", "generate", "--alg", alg]
    if kid:
        cmd += ["--kid", kid]
    if nxt:
        cmd.append("--next")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True,
                       stdin=subprocess.DEVNULL)
    assert r.stderr == ""
    return r.stdout


def write_keys(path, *lines):
    path.write_text("".join(lines))
    os.chmod(path, 0o600)


def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def header_and_claims(jwt):
    h, p, _ = jwt.split(".")
    return b64json(h), b64json(p)


def verify(srv, *tokens, issuer=ISSUER, audience=AUDIENCE):
    """Each token through panva/jose against srv's JWKS URL."""
    assert shutil.which("node") and (REPO / "tests" / "jwt" / "node_modules" / "jose").is_dir(), \
        "needs node and tests/jwt/node_modules (make deps-browser runs npm ci there)"
    r = subprocess.run(["node", str(VERIFIER), srv.direct_url + "/.well-known/jwks.json", issuer, audience],
                       input="".join(t + "\n" for t in tokens), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(out) == len(tokens), r.stdout + r.stderr
    return out


def mint(api, token, expect=200, **kw):
    r = api.post("/sessions/token", headers={"Authorization": f"Bearer {token}"}, expect=expect, **kw)
    return r.json()


@pytest.fixture
def keyfile(tmp_path):
    f = tmp_path / "jwt-keys"
    write_keys(f, keygen("EdDSA", "ed-1"))
    return f


@pytest.fixture
def jwt_server(make_server, keyfile):
    return make_server("--jwt-keys", keyfile, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
                       "--jwt-claims", "deviceId,data")


def feed(api, **params):
    return api.get("/revocations", params=params or None, expect=200).json()


def whole_feed(api, since=None):
    """Every page, following `next`; returns (entries, last cursor)."""
    out, cursor = [], since
    for _ in range(1000):
        page = feed(api, **({"since": cursor} if cursor else {}), limit=2)
        out += page["revocations"]
        cursor = page["next"]
        if not page["more"]:
            return out, cursor
    raise AssertionError("the feed never ended")


# ---- keys ---------------------------------------------------------------


def test_jwks_publishes_public_keys_only(make_server, tmp_path):
    f = tmp_path / "keys"
    lines = [keygen("EdDSA", "ed-1"), keygen("ES256", "es-1"), keygen("EdDSA", "ed-2", nxt=True)]
    write_keys(f, *lines)
    srv = make_server("--jwt-keys", f)
    r = srv.api.get("/.well-known/jwks.json", expect=200)
    assert r.headers["Content-Type"].startswith("application/json")
    keys = {k["kid"]: k for k in r.json()["keys"]}
    assert set(keys) == {"ed-1", "es-1", "ed-2"}
    assert keys["ed-1"] == {"kty": "OKP", "crv": "Ed25519", "x": keys["ed-1"]["x"], "kid": "ed-1",
                            "alg": "EdDSA", "use": "sig"}
    assert keys["es-1"]["kty"] == "EC" and keys["es-1"]["crv"] == "P-256" and keys["es-1"]["alg"] == "ES256"
    assert all("d" not in k for k in keys.values())
    # the last line not marked next signs: es-1
    s = srv.api.create(new_user())
    h, _ = header_and_claims(mint(srv.api, s["token"])["accessToken"])
    assert h == {"alg": "ES256", "kid": "es-1", "typ": "at+jwt"}
    os.kill(srv.pid, signal.SIGHUP)  # the reload logs the keys' ids, never their bytes
    wait_for(lambda: "JWT keys reloaded" in srv.log_text(), what="the reload")
    log = srv.log_text()
    assert "es-1" in log
    assert not any(line.split()[1][:24] in log for line in lines)


def test_jwks_may_be_cached_for_five_minutes_and_nothing_else_may(make_server, tmp_path):
    f = tmp_path / "keys"
    write_keys(f, keygen("EdDSA", "ed-1"))
    srv = make_server("--jwt-keys", f)
    assert srv.api.get("/.well-known/jwks.json", expect=200).headers["Cache-Control"] == \
        "public, max-age=300"
    s = srv.api.create(new_user())
    # the next request on the same keep-alive connection is back to no-store
    assert mint(srv.api, s["token"]) and \
        srv.api.get("/revocations", expect=200).headers["Cache-Control"] == "no-store"
    assert srv.api.request("POST", "/.well-known/jwks.json", expect=405).headers["Cache-Control"] == "no-store"


def test_without_keys_the_jwt_routes_say_so(server):
    r = server.api.get("/.well-known/jwks.json", expect=404)
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.headers["Cache-Control"] == "no-store"  # only a 2xx may be cached
    s = server.api.create(new_user())
    mint(server.api, s["token"], expect=404)
    server.api.post(f"/sessions/{s['sessionId']}/refresh", params={"accessToken": "true"},
                    headers={"Authorization": f"Bearer {s['token']}"}, expect=400)
    assert server.api.validate(s["token"])["isValid"]  # the refresh above rotated nothing


def test_a_bad_key_file_stops_the_start_without_showing_the_key(make_server, tmp_path):
    f = tmp_path / "keys"
    line = keygen("EdDSA", "ed-1")
    secret = line.split()[1]
    write_keys(f, line.strip() + " later\n")
    srv = make_server("--jwt-keys", f, start=False)
    r = subprocess.run(srv.command(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "jwt-keys" in r.stderr or str(f) in r.stderr
    assert secret not in r.stderr and secret[:16] not in r.stderr


@pytest.mark.parametrize("args,why", [
    (["--jwt-claims", "token"], "jwt-claims"),
    (["--history-retention", "1m"], "history-retention"),
])
def test_unsafe_settings_are_refused(make_server, keyfile, args, why):
    srv = make_server("--jwt-keys", keyfile, *args, start=False)
    r = subprocess.run(srv.command(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and why in r.stderr


# ---- minting --------------------------------------------------------------


def test_token_route_mints_a_token_jose_verifies(jwt_server):
    api = jwt_server.api
    user = new_user()
    s = api.create(user, acr="aal2", amr=["pwd", "otp"], deviceId="laptop-1", data={"plan": "pro"})
    a, b = mint(api, s["token"]), mint(api, s["token"])
    assert a["tokenType"] == "Bearer" and a["expiresIn"] == 300
    for t in (a, b):
        assert s["token"] not in t["accessToken"]
    ra, rb = verify(jwt_server, a["accessToken"], b["accessToken"])
    assert ra["ok"] and rb["ok"], (ra, rb)
    c = ra["payload"]
    assert c["iss"] == ISSUER and c["aud"] == AUDIENCE and c["sub"] == user
    assert c["sid"] == s["sessionId"]
    assert c["exp"] - c["iat"] == 300 and c["nbf"] == c["iat"]
    assert c["auth_time"] == int(parse_time(s["authTime"]).timestamp())
    assert c["acr"] == "aal2" and c["amr"] == ["pwd", "otp"]
    assert c["deviceId"] == "laptop-1" and c["data"] == {"plan": "pro"}
    assert "userAgent" not in c and "token" not in c
    # asked twice, the session's token is handed out again (--jwt-reuse; test_jwt_reuse.py)
    assert len(c["jti"]) >= 22 and b["accessToken"] == a["accessToken"] and 240 <= b["expiresIn"] <= 300
    assert ra["header"]["kid"] == "ed-1" and ra["header"]["alg"] == "EdDSA"
    # the session token never reaches the log, nor the access token
    log = jwt_server.log_text()
    assert s["token"] not in log and a["accessToken"] not in log


def test_the_verifier_checks_issuer_audience_and_signature(jwt_server):
    s = jwt_server.api.create(new_user())
    t = mint(jwt_server.api, s["token"])["accessToken"]
    h, p, sig = t.split(".")
    forged = b64json(p)
    forged["sub"] = "mallory"
    forged_p = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    none_h = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    res = verify(jwt_server, f"{h}.{forged_p}.{sig}", f"{none_h}.{p}.")
    assert [r["ok"] for r in res] == [False, False]
    assert not verify(jwt_server, t, audience="another-api")[0]["ok"]
    assert not verify(jwt_server, t, issuer="https://evil.test")[0]["ok"]


def test_refresh_can_return_an_access_token(jwt_server):
    api = jwt_server.api
    s = api.create(new_user())
    plain = api.post(f"/sessions/{s['sessionId']}/refresh",
                     headers={"Authorization": f"Bearer {s['token']}"}, expect=200).json()
    assert "accessToken" not in plain
    r = api.post(f"/sessions/{s['sessionId']}/refresh", params={"accessToken": "true"},
                 headers={"Authorization": f"Bearer {plain['token']}"}, expect=200).json()
    assert r["token"] != plain["token"] and r["accessTokenExpiresIn"] == 300
    res = verify(jwt_server, r["accessToken"])[0]
    assert res["ok"] and res["payload"]["sid"] == s["sessionId"]
    assert r["token"] not in r["accessToken"] and plain["token"] not in r["accessToken"]
    api.post(f"/sessions/{s['sessionId']}/refresh", params={"accessToken": "yes"},
             headers={"Authorization": f"Bearer {r['token']}"}, expect=400)
    assert api.validate(r["token"])["isValid"]  # the refused refresh rotated nothing


def test_validate_can_return_an_access_token(jwt_server):
    api = jwt_server.api
    user = new_user()
    s = api.create(user, amr=["pwd"], deviceId="phone-2")
    assert "accessToken" not in api.validate(s["token"])
    for how in ({"headers": {"Authorization": f"Bearer {s['token']}"}},
                {"json": {"token": s["token"], "userAgent": "ua"}}):
        r = api.post("/sessions/validate", params={"accessToken": "true"}, expect=200, **how).json()
        assert r["isValid"] and r["sessionId"] == s["sessionId"]
        assert 240 <= r["accessTokenExpiresIn"] <= 300  # the second one is handed out again
        res = verify(jwt_server, r["accessToken"])[0]
        assert res["ok"], res
        c = res["payload"]
        assert c["sid"] == s["sessionId"] and c["sub"] == user
        assert c["amr"] == ["pwd"] and c["deviceId"] == "phone-2"  # the optional fields are read
        assert s["token"] not in r["accessToken"]
    plain = api.post("/sessions/validate", params={"accessToken": "false"},
                     headers={"Authorization": f"Bearer {s['token']}"}, expect=200).json()
    assert plain["isValid"] and "accessToken" not in plain
    for bad in ("yes", "1", ""):
        api.post("/sessions/validate", params={"accessToken": bad},
                 headers={"Authorization": f"Bearer {s['token']}"}, expect=400)
    # an invalid session token gets the usual invalid answer, and no token
    r = api.post("/sessions/validate", params={"accessToken": "true"},
                 headers={"Authorization": f"Bearer {'A' * 43}"}, expect=200).json()
    assert r == {"isValid": False, "expiry": None}
    api.delete(f"/sessions/{s['sessionId']}", expect=204)
    r = api.post("/sessions/validate", params={"accessToken": "true"},
                 headers={"Authorization": f"Bearer {s['token']}"}, expect=200).json()
    assert r == {"isValid": False, "expiry": None}


def test_validate_asks_for_a_token_a_server_without_keys_cannot_mint(server):
    s = server.api.create(new_user())
    r = server.api.post("/sessions/validate", params={"accessToken": "true"},
                        headers={"Authorization": f"Bearer {s['token']}"}, expect=400)
    assert "--jwt-keys" in r.json()["detail"]
    assert server.api.validate(s["token"])["isValid"]


def test_lifetime_is_bounded_by_the_session(make_server, keyfile):
    srv = make_server("--jwt-keys", keyfile, "--absolute-timeout", "90s")
    idle = srv.api.create(new_user(), ttlSeconds=40)
    t = mint(srv.api, idle["token"])
    c = header_and_claims(t["accessToken"])[1]
    assert c["exp"] <= parse_time(idle["expiry"]).timestamp() and t["expiresIn"] <= 40
    absolute = srv.api.create(new_user())
    t = mint(srv.api, absolute["token"])
    c = header_and_claims(t["accessToken"])[1]
    assert c["exp"] <= parse_time(absolute["absoluteExpiry"]).timestamp() and t["expiresIn"] <= 90


def test_no_token_for_a_session_that_is_not_valid(make_server, keyfile, clock):
    srv = make_server("--jwt-keys", keyfile, env=clock.env)
    api = srv.api
    mint(api, "A" * 43, expect=401)
    r = api.post("/sessions/token", headers={"Authorization": "Basic Zm9vOmJhcg=="}, expect=400)
    assert r.headers["Content-Type"] == "application/problem+json"
    api.post("/sessions/token", expect=400)
    gone = api.create(new_user())
    api.delete(f"/sessions/{gone['sessionId']}", expect=204)
    assert mint(api, gone["token"], expect=401)["status"] == 401
    old = api.create(new_user(), ttlSeconds=60)
    clock.advance(61)
    mint(api, old["token"], expect=401)
    s = api.create(new_user())
    api.post("/sessions/token", headers={"Authorization": f"Bearer {s['token']}"},
             json={"token": s["token"]}, expect=400)


# ---- rotation ---------------------------------------------------------------


def reload(srv, want_kids):
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: {k["kid"] for k in srv.api.get("/.well-known/jwks.json").json()["keys"]} == want_kids,
             what=f"the JWKS to publish {want_kids}")


def test_rotation_with_overlap(make_server, tmp_path):
    f = tmp_path / "keys"
    k1, k2 = keygen("EdDSA", "k1"), keygen("ES256", "k2")
    write_keys(f, k1)
    srv = make_server("--jwt-keys", f, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
    api = srv.api
    s = api.create(new_user())
    a = mint(api, s["token"])["accessToken"]
    # 1. publish k2 before it signs
    write_keys(f, k1, k2.strip() + " next\n")
    reload(srv, {"k1", "k2"})
    assert header_and_claims(mint(api, s["token"])["accessToken"])[0]["kid"] == "k1"
    # 2. k2 signs; k1 stays published for the tokens it signed
    write_keys(f, k1, k2)
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: header_and_claims(mint(api, s["token"])["accessToken"])[0]["kid"] == "k2",
             what="k2 to sign")
    b = mint(api, s["token"])["accessToken"]
    ra, rb = verify(srv, a, b)
    assert ra["ok"] and ra["header"]["kid"] == "k1", ra
    assert rb["ok"] and rb["header"]["alg"] == "ES256", rb
    # 3. k1 retired: its tokens no longer verify, k2's do
    write_keys(f, k2)
    reload(srv, {"k2"})
    ra, rb = verify(srv, a, b)
    assert not ra["ok"] and ra["code"] == "ERR_JWKS_NO_MATCHING_KEY", ra
    assert rb["ok"]
    # a broken file on SIGHUP keeps the keys in use
    f.write_text("k3 not-a-key\n")
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: "keeping the current JWT keys" in srv.log_text(), what="the reload to be refused")
    assert verify(srv, mint(api, s["token"])["accessToken"])[0]["ok"]


def test_a_key_never_published_does_not_verify(make_server, keyfile, tmp_path):
    other_keys = tmp_path / "other"
    write_keys(other_keys, keygen("EdDSA", "ed-1"))  # the same kid, another key
    ours = make_server("--jwt-keys", keyfile, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
    theirs = make_server("--jwt-keys", other_keys, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
    s = theirs.api.create(new_user())
    t = mint(theirs.api, s["token"])["accessToken"]
    assert verify(theirs, t)[0]["ok"]
    res = verify(ours, t)[0]
    assert not res["ok"] and res["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", res


# ---- the revocation feed ----------------------------------------------------


def test_revocations_after_every_kind_of_ending(make_server, keyfile, clock):
    srv = make_server("--jwt-keys", keyfile, "--max-sessions-per-user", "2", "--refresh-grace", "10s",
                      env=clock.env)
    api = srv.api
    _, start = whole_feed(api)
    u1, u2, u3, u4 = (new_user() for _ in range(4))
    deleted = api.create(u1)
    api.delete(f"/sessions/{deleted['sessionId']}", expect=204)
    user_wide = [api.create(u2), api.create(u2)]
    api.delete(f"/users/{u2}/sessions", expect=(200, 204))
    oldest = api.create(u3)
    api.create(u3)
    api.create(u3)  # evicts the least recently seen: oldest
    bulk = api.create(u4)
    api.post("/sessions/bulk-delete", json={"sessionIds": [bulk["sessionId"]]}, expect=200)
    reused = api.create(new_user())
    fresh = api.post(f"/sessions/{reused['sessionId']}/refresh",
                     headers={"Authorization": f"Bearer {reused['token']}"}, expect=200).json()
    clock.advance(11)  # past --refresh-grace: presenting the old token again is theft
    api.post(f"/sessions/{reused['sessionId']}/refresh",
             headers={"Authorization": f"Bearer {reused['token']}"}, expect=401)
    alive = api.create(new_user())
    entries, end = whole_feed(api, start)
    got = {e["sid"]: e["reason"] for e in entries}
    assert got == {deleted["sessionId"]: "revoked",
                   user_wide[0]["sessionId"]: "user_revoked", user_wide[1]["sessionId"]: "user_revoked",
                   oldest["sessionId"]: "evicted",
                   bulk["sessionId"]: "bulk_revoked",
                   reused["sessionId"]: "token_reuse"}, entries
    assert alive["sessionId"] not in got and fresh["sessionId"] == reused["sessionId"]
    for e in entries:
        parse_time(e["revokedAt"], "revokedAt")
        assert set(e) == {"sid", "revokedAt", "reason"}
    # the cursor moves on: nothing twice, and the next revocation alone
    assert feed(api, since=end)["revocations"] == []
    api.delete(f"/sessions/{alive['sessionId']}", expect=204)
    page = feed(api, since=end)
    assert [e["sid"] for e in page["revocations"]] == [alive["sessionId"]] and page["next"] != end
    # a verifier starting now (no cursor) sees them all
    assert {e["sid"] for e in whole_feed(api)[0]} >= set(got)


def test_expiry_is_not_a_revocation(make_server, keyfile, clock):
    srv = make_server("--jwt-keys", keyfile, "--sweep-interval", "50ms", env=clock.env)
    api = srv.api
    s = api.create(new_user(), ttlSeconds=60)
    clock.advance(61)
    wait_for(lambda: any(e["event"] == "expired" for e in
                         api.get(f"/sessions/{s['sessionId']}/events").json()["events"]),
             what="the sweeper to end the session")
    assert s["sessionId"] not in {e["sid"] for e in whole_feed(api)[0]}


@pytest.mark.parametrize("since", ["x", "1", "-1.2", "1.-2", "1.2.3", "99999999999999999999.1", ""])
def test_a_cursor_the_server_did_not_issue_is_refused(server, since):
    r = server.api.get("/revocations", params={"since": since}, expect=400)
    assert r.headers["Content-Type"] == "application/problem+json"


def test_the_feed_needs_the_validate_scope(make_server, keyfile, tmp_path):
    import hashlib
    import secrets
    keys = {s: secrets.token_urlsafe(32) for s in ("validate", "sessions")}
    f = tmp_path / "api-keys"
    f.write_text("".join(f"k-{s} {hashlib.sha256(k.encode()).hexdigest()} {s}\n" for s, k in keys.items()))
    srv = make_server("--api-keys", f, "--jwt-keys", keyfile)
    srv.api.get("/revocations", expect=401)
    srv.api.get("/revocations", headers={"X-Api-Key": keys["sessions"]}, expect=403)
    srv.api.get("/revocations", headers={"X-Api-Key": keys["validate"]}, expect=200)
    srv.api.get("/.well-known/jwks.json", expect=200)  # public


@pytest.mark.skipif(not PG_MODE, reason="replicas share a PostgreSQL (SESSIOND_TEST_STORE=postgres)")
def test_the_feed_skips_nothing_a_slower_transaction_commits_later(make_server, keyfile):
    """Across replicas a lower seq can commit after a higher one. The feed
    holds back what a running transaction could still precede, so a cursor
    never moves past an event that commits later."""
    a = make_server("--jwt-keys", keyfile)
    db = pg().database_for(a.data_dir)
    b = make_server("--jwt-keys", keyfile, "--store", pg().url(db))
    _, start = whole_feed(a.api)
    slow = subprocess.Popen([pgserver.PSQL, "-h", "127.0.0.1", "-p", str(pg().port), "-U", "postgres",
                             "-d", db, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        slow.stdin.write("BEGIN; INSERT INTO audit_events(at, event, session_id, user_id, reason) "
                         "VALUES ((extract(epoch from now()) * 1000)::bigint, 'revoked', "
                         "'SLOWSLOWSLOWSLOWSLOW01', 'slow-user', 'revoked');\n")
        slow.stdin.flush()
        wait_for(lambda: pg().psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' "
                                   "AND state = 'idle in transaction' AND backend_xid IS NOT NULL").strip() == "1",
                 what="the slow transaction to hold its insert")
        s = b.api.create(new_user())
        b.api.delete(f"/sessions/{s['sessionId']}", expect=204)  # commits after a later seq
        page = feed(a.api, since=start)
        assert page["revocations"] == [] and page["next"] == start, page
        slow.stdin.write("COMMIT;\n")
        slow.stdin.close()
        assert slow.wait(timeout=60) == 0, slow.stderr.read()
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    for srv in (a, b):
        got = [e["sid"] for e in whole_feed(srv.api, start)[0]]
        assert got == ["SLOWSLOWSLOWSLOWSLOW01", s["sessionId"]], got

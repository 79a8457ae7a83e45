"""The self-service API (/me/sessions): a user's own devices, authenticated
by the user's own session token (Bearer or the --auth-cookie cookie), never
by an API key. A token reaches only its own user's sessions; revocations are
audited with the actor "self:<sessionId>"."""

import hashlib
import secrets

import pytest
import requests

from conftest import HTTP_TIMEOUT, new_user, problem_detail, record_token

CHROME_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")
FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def login(api, user, **fields):
    s = api.create(user, **fields)
    record_token(s["token"])
    return s


def me(api, token, expect=200, **kw):
    return api.get("/me/sessions", headers=bearer(token), expect=expect, **kw)


def events(api, session_id):
    return api.get(f"/sessions/{session_id}/events", expect=200).json()["events"]


def test_lists_my_sessions_with_this_one_marked(api):
    user = new_user("me")
    laptop = login(api, user, deviceId="laptop-1", userAgent=CHROME_MAC, ipAddress="203.0.113.7",
                   geoLocation={"country": "FR", "city": "Lyon"}, data={"secret": "app-only"})
    phone = login(api, user, deviceId="phone-1", userAgent=FIREFOX_WIN, ipAddress="198.51.100.4")
    other = login(api, new_user("me-other"))
    body = me(api, laptop["token"]).json()
    assert set(body) == {"userId", "currentSessionId", "sessions", "nextCursor"}
    assert body["userId"] == user and body["currentSessionId"] == laptop["sessionId"]
    assert body["nextCursor"] is None
    by_id = {s["sessionId"]: s for s in body["sessions"]}
    assert set(by_id) == {laptop["sessionId"], phone["sessionId"]}, "only my own sessions"
    mine = by_id[laptop["sessionId"]]
    assert mine["current"] is True and by_id[phone["sessionId"]]["current"] is False
    assert mine["deviceId"] == "laptop-1" and mine["userAgent"] == CHROME_MAC
    assert mine["ipAddress"] == "203.0.113.7" and mine["geoLocation"] == {"country": "FR", "city": "Lyon"}
    for key in ("createdAt", "lastSeen", "expiry", "mfa"):
        assert key in mine, key
    # Never the application's data, the token, or anything of it.
    for s in body["sessions"]:
        assert "data" not in s and "token" not in s and "bind" not in s
    assert laptop["token"] not in me(api, laptop["token"]).text
    # The other user's token sees only the other user's.
    body = me(api, other["token"]).json()
    assert [s["sessionId"] for s in body["sessions"]] == [other["sessionId"]]


def test_the_cookie_authenticates_too(module_server):
    api = module_server.api
    user = new_user("me-cookie")
    s = login(api, user)
    r = api.get("/me/sessions", headers={"Cookie": f"theme=dark; session={s['token']}"}, expect=200)
    assert r.json()["currentSessionId"] == s["sessionId"]
    # A cookie-authenticated DELETE from a page of another origin is refused (CSRF).
    r = api.delete("/me/sessions", headers={"Cookie": f"session={s['token']}",
                                            "Origin": "https://evil.example"}, expect=403)
    assert "origin" in problem_detail(r).lower()
    assert api.validate(s["token"])["isValid"] is True
    # From this origin it passes (straight to the server: a proxy in front
    # would rewrite Host).
    url = module_server.direct_url
    r = requests.delete(url + "/me/sessions", timeout=HTTP_TIMEOUT,
                        headers={"Cookie": f"session={s['token']}", "Origin": url})
    assert r.status_code == 200, r.text


def test_no_or_bad_token_is_401_with_a_bearer_challenge(api):
    for headers in ({}, bearer("A" * 43), bearer("not a token"), {"Cookie": "session=" + "B" * 43},
                    {"Authorization": "Basic Zm9vOmJhcg=="}):
        r = api.get("/me/sessions", headers=headers, expect=401)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert problem_detail(r)
    s = login(api, new_user("me-gone"))
    api.delete(f"/sessions/{s['sessionId']}", expect=204)
    me(api, s["token"], expect=401)
    api.delete("/me/sessions", headers=bearer(s["token"]), expect=401)


def test_revoke_one_of_mine(api):
    user = new_user("me-one")
    here, there = login(api, user), login(api, user)
    api.delete(f"/me/sessions/{there['sessionId']}", headers=bearer(here["token"]), expect=204)
    assert api.validate(there["token"])["isValid"] is False
    assert api.validate(here["token"])["isValid"] is True
    # Already gone: 404.
    api.delete(f"/me/sessions/{there['sessionId']}", headers=bearer(here["token"]), expect=404)
    # Audited with the acting session.
    ev = [e for e in events(api, there["sessionId"]) if e["event"] == "revoked"]
    assert ev and ev[0]["actor"] == f"self:{here['sessionId']}", ev
    # Signing out this device is allowed too.
    api.delete(f"/me/sessions/{here['sessionId']}", headers=bearer(here["token"]), expect=204)
    assert api.validate(here["token"])["isValid"] is False


def test_revoke_one_of_mine_only_at_the_version_i_saw(api):
    user = new_user("me-if")
    here, there = login(api, user), login(api, user)
    listed = {d["sessionId"]: d for d in me(api, here["token"]).json()["sessions"]}
    assert listed[there["sessionId"]]["version"] == there["version"] == 1
    # The other device changed after the listing: a sign-out on the old
    # version ends nothing and says the version it found.
    api.put(f"/sessions/{there['sessionId']}", json={"deviceInfo": "renamed"}, expect=200)
    r = api.delete(f"/me/sessions/{there['sessionId']}", headers={**bearer(here["token"]), "If-Match": '"1"'},
                   expect=412)
    assert r.headers["ETag"] == '"2"' and 'version "2"' in problem_detail(r), problem_detail(r)
    assert api.validate(there["token"], touch=False)["isValid"] is True
    assert not [e for e in events(api, there["sessionId"]) if e["event"] == "revoked"]
    # If-None-Match: * on a session that exists fails the same way.
    api.delete(f"/me/sessions/{there['sessionId']}", headers={**bearer(here["token"]), "If-None-Match": "*"},
               expect=412)
    api.delete(f"/me/sessions/{there['sessionId']}",
               headers={**bearer(here["token"]), "If-None-Match": ", ".join(f'"{i}"' for i in range(9))},
               expect=400)
    # On the version it is at, it ends.
    api.delete(f"/me/sessions/{there['sessionId']}", headers={**bearer(here["token"]), "If-Match": '"2"'},
               expect=204)
    assert api.validate(there["token"])["isValid"] is False
    # Another user's session is 404 whatever the condition: a 412 would show
    # that it exists (and its version).
    theirs = login(api, new_user("me-if-b"))
    for cond in ({"If-Match": '"1"'}, {"If-Match": '"9"'}, {"If-None-Match": "*"}):
        api.delete(f"/me/sessions/{theirs['sessionId']}", headers={**bearer(here["token"]), **cond}, expect=404)
    assert api.validate(theirs["token"], touch=False)["isValid"] is True


def test_another_users_session_is_not_found_not_forbidden(api):
    mine = login(api, new_user("me-a"))
    theirs = login(api, new_user("me-b"))
    unknown = api.delete(f"/me/sessions/{'A' * 22}", headers=bearer(mine["token"]), expect=404)
    r = api.delete(f"/me/sessions/{theirs['sessionId']}", headers=bearer(mine["token"]), expect=404)
    assert problem_detail(r) == problem_detail(unknown), "the answer must not reveal that it exists"
    assert api.validate(theirs["token"])["isValid"] is True
    assert not [e for e in events(api, theirs["sessionId"]) if e["event"] == "revoked"]
    api.delete("/me/sessions/not-an-id", headers=bearer(mine["token"]), expect=400)


def test_revoke_all_but_this_one(api):
    user = new_user("me-all")
    here = login(api, user)
    others = [login(api, user) for _ in range(3)]
    stranger = login(api, new_user("me-stranger"))
    r = api.delete("/me/sessions", headers=bearer(here["token"]), expect=200)
    assert r.json() == {"deleted": 3}
    for o in others:
        assert api.validate(o["token"])["isValid"] is False
        ev = [e for e in events(api, o["sessionId"]) if e["event"] == "revoked"]
        assert ev and ev[0]["actor"] == f"self:{here['sessionId']}" and ev[0]["reason"] == "user_revoked"
    assert api.validate(here["token"])["isValid"] is True
    assert api.validate(stranger["token"])["isValid"] is True
    assert [s["sessionId"] for s in me(api, here["token"]).json()["sessions"]] == [here["sessionId"]]


def test_pagination(api):
    user = new_user("me-page")
    made = [login(api, user) for _ in range(5)]
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        body = me(api, made[0]["token"], params=params).json()
        assert len(body["sessions"]) <= 2
        seen += [s["sessionId"] for s in body["sessions"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(m["sessionId"] for m in made)
    me(api, made[0]["token"], params={"limit": "0"}, expect=400)
    me(api, made[0]["token"], params={"cursor": "x"}, expect=400)


def test_api_keys_are_not_a_credential_here(make_server, tmp_path):
    key = secrets.token_urlsafe(32)
    keys = tmp_path / "keys"
    keys.write_text(f"ops {hashlib.sha256(key.encode()).hexdigest()} sessions,admin\n")
    srv = make_server("--api-keys", str(keys))
    r = requests.get(srv.url + "/me/sessions", headers={"X-Api-Key": key}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    s = srv.api.post("/sessions", json={"userId": new_user("me-keyed")}, headers={"X-Api-Key": key},
                     expect=201).json()
    record_token(s["token"])
    r = requests.get(srv.url + "/me/sessions", headers=bearer(s["token"]), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.json()["currentSessionId"] == s["sessionId"]


def test_throttled_like_validation(make_server):
    srv = make_server("--failed-validation-rate", "1", "--failed-validation-burst", "3")
    good = login(srv.api, new_user("me-thr"))
    statuses = []
    for _ in range(200):  # far more than the burst plus what can refill meanwhile
        r = requests.get(srv.url + "/me/sessions", headers=bearer("C" * 43), timeout=HTTP_TIMEOUT)
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses
    assert r.headers["Retry-After"] == "1"
    # The address is blocked for its valid token too, as on validation.
    r = requests.get(srv.url + "/me/sessions", headers=bearer(good["token"]), timeout=HTTP_TIMEOUT)
    assert r.status_code == 429


@pytest.mark.parametrize("method,path", [("PUT", "/me/sessions"), ("POST", "/me/sessions"),
                                         ("GET", f"/me/sessions/{'A' * 22}")])
def test_other_methods_are_405(api, method, path):
    r = api.request(method, path, expect=405)
    assert "Allow" in r.headers

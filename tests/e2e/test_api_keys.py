"""Caller authentication: API keys with scopes (X-Api-Key, or HTTP Basic
client credentials on /introspect), configured as SHA-256 hashes, reloaded
on SIGHUP; ambiguous credentials refused; protected mode without keys."""
import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess

import requests

from conftest import (HTTP_TIMEOUT, REPO, SESSIOND_BIN, child_env, free_port, http_request_bytes, new_user,
                      observe_raw, observe_response, problem_detail, raw_exchange, record_token, wait_for)


def _key_line(key_id, key, scopes):
    return f"{key_id} {hashlib.sha256(key.encode()).hexdigest()} {scopes}\n"


def _keys(tmp_path, lines):
    p = tmp_path / "keys"
    p.write_text("# id  sha256(key)  scopes\n" + "".join(lines))
    return p


def test_scopes_are_enforced(make_server, tmp_path):
    gw, app, ops = (secrets.token_urlsafe(32) for _ in range(3))
    path = _keys(tmp_path, [_key_line("gateway", gw, "validate"), _key_line("app", app, "sessions,validate"),
                            _key_line("ops", ops, "admin")])
    srv = make_server("--api-keys", str(path))
    a = srv.api
    user = new_user()
    # No key, an unknown key: 401 with a problem and WWW-Authenticate.
    r = a.post("/sessions", json={"userId": user}, expect=401)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "X-Api-Key" in r.headers.get("WWW-Authenticate", "")
    a.post("/sessions", json={"userId": user}, headers={"X-Api-Key": "nope"}, expect=401)
    # A key without the scope: 403.
    a.post("/sessions", json={"userId": user}, headers={"X-Api-Key": gw}, expect=403)
    s = a.post("/sessions", json={"userId": user}, headers={"X-Api-Key": app}, expect=201).json()
    v = a.post("/sessions/validate", headers={"X-Api-Key": gw, "Authorization": f"Bearer {s['token']}"},
               expect=200).json()
    assert v["isValid"] is True
    a.get(f"/sessions/{s['sessionId']}", headers={"X-Api-Key": gw}, expect=403)
    a.get(f"/sessions/{s['sessionId']}", headers={"X-Api-Key": app}, expect=200)
    # User-wide and bulk revocation need admin.
    a.delete(f"/users/{user}/sessions", headers={"X-Api-Key": app}, expect=403)
    r = a.post("/sessions/bulk-delete", json={"userIds": [user]}, headers={"X-Api-Key": ops}, expect=200)
    assert r.json()["deleted"] == 1
    # Health and metrics stay public (probes, scrapers).
    a.get("/healthz", expect=200)
    a.get("/readyz", expect=200)
    # The keys themselves never reach the log.
    log = srv.log_text()
    for k in (gw, app, ops):
        assert k not in log
    assert "caller_auth_failed" in log


def test_sighup_rotates_keys_without_a_restart(make_server, tmp_path):
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = _keys(tmp_path, [_key_line("k1", old, "sessions")])
    srv = make_server("--api-keys", str(path))
    srv.api.post("/sessions", json={"userId": new_user()}, headers={"X-Api-Key": old}, expect=201)
    path.write_text(_key_line("k2", new, "sessions"))
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reloaded" in srv.log_text(), timeout=5, what="the key reload")
    srv.api.post("/sessions", json={"userId": new_user()}, headers={"X-Api-Key": old}, expect=401)
    srv.api.post("/sessions", json={"userId": new_user()}, headers={"X-Api-Key": new}, expect=201)


def test_protected_mode_refuses_a_public_address_without_keys(tmp_path):
    # Refused before binding anything: nothing listens on 0.0.0.0 here.
    r = subprocess.run([SESSIOND_BIN, "--listen", f"0.0.0.0:{free_port()}", "--data-dir",
                        str(tmp_path / "d")], capture_output=True, text=True, timeout=30,
                       env=child_env(), stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert "without API keys" in r.stderr


def test_bad_key_file_is_a_clear_start_error(tmp_path):
    path = tmp_path / "keys"
    path.write_text("k1 nothex sessions\n")
    r = subprocess.run([SESSIOND_BIN, "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
                        str(tmp_path / "d"), "--api-keys", str(path)], capture_output=True,
                       text=True, timeout=30, env=child_env(), stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "keys:1" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# Protected mode and DNS rebinding (issue 15, item 4). Without keys sessiond
# listens on loopback only, but a page in a browser on the same machine can
# rebind its own name to 127.0.0.1 (its requests then carry Host: its name)
# or post to 127.0.0.1 from its own origin. These requests go straight to
# the server (not through Prism, which may rewrite Host).
# --------------------------------------------------------------------------
def _raw(srv, method, path, headers, **kw):
    r = requests.request(method, srv.direct_url + path, headers=headers, timeout=HTTP_TIMEOUT,
                         allow_redirects=False, **kw)
    observe_response(method, path, r.status_code, r.headers, r.content)
    return r


def _refused_as_protected(r, what):
    assert r.status_code == 403, f"{what}: {r.status_code} {r.text[:300]}"
    detail = problem_detail(r)
    assert "protected mode" in detail and "--api-keys" in detail, f"{what}: unhelpful detail {detail!r}"
    return detail


def test_protected_mode_refuses_a_rebound_host(server):
    api = server.api
    user = new_user("rebind")
    s = api.create(user)
    # The reviewer's request: a page on evil.example, its name rebound to 127.0.0.1.
    evil = {"Host": "evil.example", "Origin": "http://evil.example"}
    r = _raw(server, "POST", "/sessions/bulk-delete", evil, json={"userIds": [user]})
    detail = _refused_as_protected(r, "bulk-delete through a rebound name")
    assert "Host 'evil.example'" in detail, detail
    # The same page could read what it may not change: refused too, as is /metrics.
    for path in (f"/users/{user}/sessions", f"/sessions/{s['sessionId']}", "/metrics"):
        _refused_as_protected(_raw(server, "GET", path, {"Host": f"evil.example:{server.port}"}), path)
    # Probes and the console's static files stay public; they hold no data.
    assert _raw(server, "GET", "/healthz", {"Host": "evil.example"}).status_code == 200
    assert _raw(server, "GET", "/console/app.js", {"Host": "evil.example"}).status_code == 200
    # Nothing was deleted, and the refusals are logged without the key material.
    assert api.validate(s["token"])["isValid"] is True
    assert [x["sessionId"] for x in api.list_user(user).json()["sessions"]] == [s["sessionId"]]
    assert "protected_mode_refused reason=host host=evil.example" in server.log_text()


def test_protected_mode_accepts_loopback_host_variants(server):
    user = new_user("hosts")
    p = server.port
    accepted = ["localhost", f"localhost:{p}", "LocalHost", "localhost.", f"console.localhost:{p}",
                "a-b.c.localhost", "127.0.0.1", f"127.0.0.1:{p}", "127.1.2.3", "127.255.255.255:80",
                "[::1]", f"[::1]:{p}", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"]
    refused = ["evil.example", f"evil.example:{p}", "localhost.evil.example", "127.0.0.1.nip.io",
               "evil-localhost", ".localhost", "a..localhost", "0.0.0.0", f"0.0.0.0:{p}", "10.0.0.1",
               "192.168.1.10", "128.0.0.1", "127.0.0.256", "127.0.0", "127.0.0.1.5", "127.1",
               "2130706433", "0x7f.0.0.1", "[::2]", "[fe80::1]", "[::ffff:10.0.0.1]", "[::1",
               "localhost:", "localhost:123456", "localhost:8o", "[::1]x", ""]
    for host in accepted:
        r = _raw(server, "GET", f"/users/{user}/sessions", {"Host": host})
        assert r.status_code == 200, f"Host {host!r} is loopback: {r.status_code} {r.text[:200]}"
    for host in refused:
        _refused_as_protected(_raw(server, "GET", f"/users/{user}/sessions", {"Host": host}), f"Host {host!r}")


def test_protected_mode_refuses_cross_site_origins_on_writes(server):
    api = server.api
    user = new_user("origin")
    for origin in ("http://evil.example", "https://evil.example", "null", "http://127.0.0.1.evil.example",
                   f"http://evil.example:{server.port}", "chrome-extension://abcdef", "file://"):
        r = _raw(server, "POST", "/sessions", {"Origin": origin}, json={"userId": user})
        detail = _refused_as_protected(r, f"POST with Origin {origin!r}")
        assert "Origin" in detail
    assert api.list_user(user).json()["sessions"] == [], "a refused create stored a session"
    s = api.create(user)
    _refused_as_protected(_raw(server, "DELETE", f"/sessions/{s['sessionId']}", {"Origin": "http://evil.example"}),
                          "DELETE from another site")
    _refused_as_protected(_raw(server, "POST", "/introspect", {"Origin": "null"}, data={"token": s["token"]}),
                          "introspection from a sandboxed page")
    assert api.validate(s["token"])["isValid"] is True
    # Pages on loopback origins (the console, a local development server) may write.
    for origin in (f"http://127.0.0.1:{server.port}", "http://localhost:3000", "https://app.localhost",
                   f"http://[::1]:{server.port}"):
        r = _raw(server, "POST", "/sessions", {"Origin": origin}, json={"userId": user})
        assert r.status_code == 201, f"Origin {origin}: {r.status_code} {r.text[:200]}"
    # Reads are not refused for their Origin: a gateway's GET /auth carries its
    # end user's Origin, and browsers send none on simple cross-site GETs anyway.
    r = _raw(server, "GET", "/auth", {"Origin": "http://evil.example", "Authorization": f"Bearer {s['token']}"})
    assert r.status_code == 200, r.text


def test_with_keys_any_host_and_origin_are_served(make_server, tmp_path):
    key = secrets.token_urlsafe(32)
    srv = make_server("--api-keys", str(_keys(tmp_path, [_key_line("app", key, "sessions")])))
    r = _raw(srv, "POST", "/sessions", {"Host": "sessiond.internal.example", "Origin": "https://app.example",
                                        "X-Api-Key": key}, json={"userId": new_user()})
    assert r.status_code == 201, r.text
    record_token(r.json()["token"])
    # Without the key, still 401, not the protected-mode 403.
    r = _raw(srv, "POST", "/sessions", {"Host": "evil.example"}, json={"userId": new_user()})
    assert r.status_code == 401


# --------------------------------------------------------------------------
# Ambiguous credentials, and RFC 7662 client authentication on /introspect
# (issue 15, item 5).
# --------------------------------------------------------------------------
def _raw_request(srv, method, path, headers, body=b""):
    """One request with headers as a list (a name may repeat, which requests
    cannot send); returns the checked response."""
    hdrs = list(headers) + [("Content-Length", str(len(body))), ("Connection", "close")]
    rs, _ = raw_exchange(srv.port, http_request_bytes(method, path, headers=hdrs, body=body))
    assert rs, f"{method} {path}: no answer"
    observe_raw(method, path, rs[0])
    return rs[0]


def test_duplicated_credentials_are_refused(make_server, tmp_path):
    """Two X-Api-Key headers used to mean "the first one wins": a proxy that
    adds its own key after the client's, or a client that sends an extra
    one, authenticated as whichever came first. Now neither is guessed."""
    app, gw = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    srv = make_server("--api-keys", str(_keys(tmp_path, [_key_line("app", app, "sessions"),
                                                         _key_line("gw", gw, "validate")])))
    user = new_user("dup-key")
    body = json.dumps({"userId": user}).encode()
    ctype = ("Content-Type", "application/json")
    for keys in ((app, "not-a-key"), ("not-a-key", app), (app, app), (gw, app)):
        r = _raw_request(srv, "POST", "/sessions", [ctype] + [("X-Api-Key", k) for k in keys], body)
        assert r.status == 400, f"keys {keys}: {r.status} {r.body[:200]!r}"
        assert "2 X-Api-Key headers" in json.loads(r.body)["detail"]
    srv.api.get(f"/users/{user}/sessions", headers={"X-Api-Key": app}, expect=200)
    assert srv.api.get(f"/users/{user}/sessions", headers={"X-Api-Key": app}).json()["sessions"] == []
    s = srv.api.post("/sessions", json={"userId": user}, headers={"X-Api-Key": app}, expect=201).json()
    # On /introspect, Authorization is a credential too (RFC 7662 client authentication).
    form = ("Content-Type", "application/x-www-form-urlencoded")
    token = f"token={s['token']}".encode()
    basic = "Basic " + base64.b64encode(f"gw:{gw}".encode()).decode()
    for hdrs in ([("X-Api-Key", gw), ("Authorization", basic)],
                 [("Authorization", basic), ("Authorization", basic)],
                 [("X-Api-Key", gw), ("Authorization", "Bearer " + s["token"])]):
        r = _raw_request(srv, "POST", "/introspect", [form] + hdrs, token)
        assert r.status == 400, f"{[h for h, _ in hdrs]}: {r.status} {r.body[:200]!r}"
        assert "Authorization" in json.loads(r.body)["detail"]
    # One credential of either kind still works.
    assert _raw_request(srv, "POST", "/introspect", [form, ("X-Api-Key", gw)], token).status == 200
    assert _raw_request(srv, "POST", "/introspect", [form, ("Authorization", basic)], token).status == 200
    log = srv.log_text()
    assert "reason=ambiguous_credentials" in log
    assert app not in log and gw not in log


def test_introspect_takes_rfc7662_client_credentials(make_server, tmp_path):
    """RFC 7662 section 2.1: the caller authenticates as an OAuth client,
    typically HTTP Basic with its client id and secret. Here the id is a
    key line's id and the secret that key, checked against that line only."""
    gw, app = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    srv = make_server("--api-keys", str(_keys(tmp_path, [_key_line("gateway", gw, "validate"),
                                                         _key_line("app", app, "sessions")])))
    s = srv.api.post("/sessions", json={"userId": new_user("basic")}, headers={"X-Api-Key": app}, expect=201).json()
    url = srv.direct_url + "/introspect"

    def introspect(auth=None, headers=None, token=s["token"]):
        r = requests.post(url, data={"token": token}, auth=auth, headers=headers, timeout=HTTP_TIMEOUT)
        observe_response("POST", "/introspect", r.status_code, r.headers, r.content)
        return r

    # requests sends Basic without RFC 6749's form encoding (as curl -u does).
    r = introspect(("gateway", gw))
    assert r.status_code == 200 and r.json()["active"] is True and r.json()["sid"] == s["sessionId"], r.text
    assert introspect(("gateway", gw), token="A" * 43).json() == {"active": False}
    # The encoded form (oauth4webapi's): '-' and '_' as %2D and %5F.
    enc = gw.replace("-", "%2D").replace("_", "%5F")
    r = introspect(headers={"Authorization": "Basic " + base64.b64encode(f"gateway:{enc}".encode()).decode()})
    assert r.status_code == 200 and r.json()["active"] is True
    for auth, why in ((("gateway", "wrong"), "valid"), (("app", gw), "valid"), (("nobody", gw), "valid"),
                      (("gateway", ""), "valid")):
        r = introspect(auth)
        assert r.status_code == 401, f"{auth[0]}: {r.status_code}"
        challenge = r.headers["WWW-Authenticate"]
        assert "Basic" in challenge and "ApiKey" in challenge, challenge
        assert why in problem_detail(r)
    r = introspect(headers={"Authorization": "Basic not*base64"})
    assert r.status_code == 401 and "base64" in problem_detail(r)
    # A known client without the scope: 403.
    assert introspect(("app", app)).status_code == 403
    # No credentials: the challenge offers both ways on /introspect only.
    r = introspect()
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
    assert "HTTP Basic" in problem_detail(r)
    r = srv.api.post("/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"}, expect=401)
    assert "Basic" not in r.headers["WWW-Authenticate"]
    # Basic is a client credential on /introspect only: elsewhere Authorization carries session tokens.
    r = requests.post(srv.direct_url + "/sessions/validate", auth=("gateway", gw), timeout=HTTP_TIMEOUT)
    assert r.status_code == 401, r.status_code
    log = srv.log_text()
    assert gw not in log and app not in log and enc not in log
    assert "reason=unknown_client_credentials" in log and "reason=malformed_client_credentials" in log


def test_introspection_with_an_oauth_client_library(make_server, tmp_path):
    """oauth4webapi (npm, tests/browser) introspects a sessiond token with
    client_secret_basic, as a resource server would, and understands the
    401 challenge for a wrong secret."""
    node_modules = REPO / "tests" / "browser" / "node_modules" / "oauth4webapi"
    assert shutil.which("node") and node_modules.is_dir(), \
        "needs node and tests/browser/node_modules (make deps-browser runs npm ci there)"
    gw, app = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    srv = make_server("--api-keys", str(_keys(tmp_path, [_key_line("resource-server", gw, "validate"),
                                                         _key_line("app", app, "sessions")])))
    user = new_user("oauth")
    s = srv.api.post("/sessions", json={"userId": user, "acr": "aal2"}, headers={"X-Api-Key": app},
                     expect=201).json()
    cfg = tmp_path / "introspect.json"
    cfg.write_text(json.dumps({"baseUrl": srv.direct_url, "clientId": "resource-server", "clientSecret": gw,
                               "wrongSecret": secrets.token_urlsafe(32), "token": s["token"]}))
    r = subprocess.run(["node", str(REPO / "tests" / "browser" / "introspect-client.mjs"), str(cfg)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                       env={k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    valid = out["valid"].get("body")
    assert valid, out["valid"]
    assert valid["active"] is True and valid["sub"] == user and valid["sid"] == s["sessionId"]
    assert valid["acr"] == "aal2" and valid["exp"] > valid["iat"]
    assert out["unknownToken"] == {"body": {"active": False}}
    bad = out["wrongSecret"]
    assert bad["error"] == "WWWAuthenticateChallengeError" and bad["status"] == 401, bad
    assert "basic" in bad["schemes"], bad
    assert gw not in srv.log_text()

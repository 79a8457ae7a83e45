"""Caller authentication: API keys with scopes (X-Api-Key), configured as
SHA-256 hashes, reloaded on SIGHUP; protected mode without keys."""
import hashlib
import os
import secrets
import signal
import subprocess

import requests

from conftest import (HTTP_TIMEOUT, SESSIOND_BIN, child_env, free_port, new_user, observe_response, problem_detail,
                      record_token, wait_for)


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

"""Caller authentication: API keys with scopes (X-Api-Key), configured as
SHA-256 hashes, reloaded on SIGHUP; protected mode without keys."""
import hashlib
import os
import secrets
import signal
import subprocess

from conftest import SESSIOND_BIN, child_env, free_port, new_user, wait_for


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

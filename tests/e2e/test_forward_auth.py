"""Forward-auth with a real nginx (Debian package) in front of a small
protected upstream, running the shipped examples/nginx-forward-auth.conf:
a valid session cookie passes with the user id forwarded; expired, revoked,
tampered and missing tokens are refused; a client cannot inject X-User-Id."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from conftest import free_port, new_user, wait_for

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class App(BaseHTTPRequestHandler):
    """The protected application: echoes the identity nginx forwarded."""

    def do_GET(self):
        body = json.dumps({"user": self.headers.get("X-User-Id"),
                           "sid": self.headers.get("X-Session-Id"),
                           "users": self.headers.get_all("X-User-Id") or []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway(make_server, tmp_path):
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (scripts/install-deps.sh test installs nginx-light)")
    srv = make_server("--idle-timeout", "2s", "--sweep-interval", "200ms")
    app = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    port = free_port()
    (tmp_path / "tmp").mkdir()
    conf = (ROOT / "examples" / "nginx-forward-auth.conf").read_text()
    conf = (conf.replace("@LISTEN@", f"127.0.0.1:{port}")
                .replace("@SESSIOND@", f"127.0.0.1:{srv.port}")
                .replace("@APP@", f"127.0.0.1:{app.server_address[1]}")
                .replace("@PREFIX@", str(tmp_path)))
    (tmp_path / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "nginx.stderr", "wb"),
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(url + "/", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False
    try:
        wait_for(up, timeout=10, what="nginx to answer")
        yield srv, url, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        app.shutdown()


def test_valid_cookie_passes_with_identity_forwarded(gateway):
    srv, url, _ = gateway
    user = new_user()
    s = srv.api.create(user)
    r = requests.get(url + "/orders", cookies={"session": s["token"]}, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json()["user"] == user and r.json()["sid"] == s["sessionId"]
    r = requests.get(url + "/orders", headers={"Authorization": f"Bearer {s['token']}"}, timeout=5)
    assert r.status_code == 200 and r.json()["user"] == user


def test_client_cannot_inject_identity_headers(gateway):
    srv, url, _ = gateway
    s = srv.api.create(new_user())
    r = requests.get(url + "/", cookies={"session": s["token"]},
                     headers={"X-User-Id": "admin"}, timeout=5)
    assert r.status_code == 200
    assert r.json()["users"] == [r.json()["user"]] and r.json()["user"] != "admin"
    r = requests.get(url + "/", headers={"X-User-Id": "admin"}, timeout=5)
    assert r.status_code == 401


def test_missing_tampered_revoked_and_expired_tokens_are_refused(gateway):
    srv, url, tmp = gateway
    s = srv.api.create(new_user())
    assert requests.get(url + "/", timeout=5).status_code == 401
    tampered = s["token"][:-1] + ("A" if s["token"][-1] != "A" else "B")
    assert requests.get(url + "/", cookies={"session": tampered}, timeout=5).status_code == 401
    assert requests.get(url + "/", cookies={"session": "x" * 43}, timeout=5).status_code == 401
    srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    assert requests.get(url + "/", cookies={"session": s["token"]}, timeout=5).status_code == 401
    e = srv.api.create(new_user())
    assert requests.get(url + "/", cookies={"session": e["token"]}, timeout=5).status_code == 200
    time.sleep(3.2)  # --idle-timeout 2s, and no activity since
    assert requests.get(url + "/", cookies={"session": e["token"]}, timeout=5).status_code == 401
    # The proxy's access log never holds a token (it is in a cookie, not the URL).
    log = (tmp / "access.log").read_text()
    assert s["token"] not in log and e["token"] not in log


def test_introspection_rfc7662(server):
    s = server.api.create(new_user())
    r = server.api.post("/introspect", data=f"token={s['token']}".encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=200)
    body = r.json()
    assert body["active"] is True and body["sid"] == s["sessionId"] and body["sub"] == s["userId"]
    assert isinstance(body["exp"], int) and isinstance(body["iat"], int) and body["exp"] > body["iat"]
    r = server.api.post("/introspect", data=b"token=nope&token_type_hint=access_token",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=200)
    assert r.json() == {"active": False}
    server.api.post("/introspect", data=b"tok=1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=400)
    server.api.post("/introspect", json={"token": s["token"]}, expect=415)

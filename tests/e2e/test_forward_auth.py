"""Forward-auth with a real gateway (Debian packages) in front of a small
protected upstream, running the shipped configurations: nginx with
examples/nginx-forward-auth.conf and Caddy with
examples/caddy-forward-auth.Caddyfile. Every gateway test runs on both. A
valid session cookie passes with the user id forwarded exactly as stored;
expired, revoked, tampered and missing tokens are refused; a client can
inject neither X-User-Id nor X-Real-IP (IP binding); a session whose stored
user id a header would alter is refused, never forwarded altered."""
import json
import os
import shutil
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from conftest import db_exec, free_port, new_user, problem_detail, wait_for

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CADDY = shutil.which("caddy") or "/usr/bin/caddy"
IDENTITY = ("x-user-id", "x-session-id")


def wire(value):
    """A header value as http.server decoded it (ISO-8859-1) back to the
    UTF-8 text the gateway sent."""
    return value.encode("latin-1").decode("utf-8") if value is not None else None


class App(BaseHTTPRequestHandler):
    """The protected application: echoes every header it received."""

    def do_GET(self):
        body = json.dumps({"user": wire(self.headers.get("X-User-Id")),
                           "sid": self.headers.get("X-Session-Id"),
                           "users": [wire(v) for v in self.headers.get_all("X-User-Id") or []],
                           "headers": [[k, wire(v)] for k, v in self.headers.items()]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def identity_headers(seen):
    """The headers the application received that a CGI-style framework
    (PHP, WSGI, Rack: HTTP_X_USER_ID) would read as X-User-Id or
    X-Session-Id."""
    return [(k, v) for k, v in seen["headers"] if k.lower().replace("_", "-") in IDENTITY]


def start_nginx(tmp_path, port, sessiond_port, app_port):
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (scripts/install-deps.sh test installs nginx-light)")
    (tmp_path / "tmp").mkdir()
    conf = (ROOT / "examples" / "nginx-forward-auth.conf").read_text()
    conf = (conf.replace("@LISTEN@", f"127.0.0.1:{port}")
                .replace("@SESSIOND@", f"127.0.0.1:{sessiond_port}")
                .replace("@APP@", f"127.0.0.1:{app_port}")
                .replace("@PREFIX@", str(tmp_path)))
    (tmp_path / "nginx.conf").write_text(conf)
    return subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "nginx.stderr", "wb"),
                            start_new_session=True)


def start_caddy(tmp_path, port, sessiond_port, app_port):
    if not os.path.exists(CADDY):
        pytest.skip("caddy is not installed (scripts/install-deps.sh test installs caddy)")
    conf = (ROOT / "examples" / "caddy-forward-auth.Caddyfile").read_text()
    conf = (conf.replace("@PORT@", str(port))
                .replace("@BIND@", "127.0.0.1")
                .replace("@SESSIOND@", f"127.0.0.1:{sessiond_port}")
                .replace("@APP@", f"127.0.0.1:{app_port}"))
    (tmp_path / "Caddyfile").write_text(conf)
    # Caddy keeps its state (autosaved config, certificates) under $HOME and
    # the XDG directories: this test's own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    return subprocess.Popen([CADDY, "run", "--config", str(tmp_path / "Caddyfile"),
                             "--adapter", "caddyfile"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "caddy.stderr", "wb"),
                            env=env, cwd=str(tmp_path), start_new_session=True)


GATEWAYS = {"nginx": start_nginx, "caddy": start_caddy}


@pytest.fixture(params=sorted(GATEWAYS))
def gateway(request, make_server, tmp_path, clock):
    """(sessiond, the gateway's URL, its directory, "nginx" or "caddy").
    sessiond runs on a wall clock the test moves (srv.clock)."""
    srv = make_server("--idle-timeout", "1h", "--sweep-interval", "200ms", env=clock.env)
    srv.clock = clock
    app = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    port = free_port()
    try:
        proc = GATEWAYS[request.param](tmp_path, port, srv.port, app.server_address[1])
    except BaseException:
        app.shutdown()
        raise
    url = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            log = next(tmp_path.glob("*.stderr")).read_text(errors="replace")
            raise AssertionError(f"{request.param} exited with {proc.returncode}: {log[-2000:]}")
        try:
            return requests.get(url + "/", timeout=1).status_code in (200, 401)
        except requests.RequestException:
            return False
    try:
        wait_for(up, timeout=10, what=f"{request.param} to answer")
        yield srv, url, tmp_path, request.param
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        app.shutdown()


def test_valid_cookie_passes_with_identity_forwarded(gateway):
    srv, url, _, _ = gateway
    user = new_user()
    s = srv.api.create(user)
    r = requests.get(url + "/orders", cookies={"session": s["token"]}, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json()["user"] == user and r.json()["sid"] == s["sessionId"]
    r = requests.get(url + "/orders", headers={"Authorization": f"Bearer {s['token']}"}, timeout=5)
    assert r.status_code == 200 and r.json()["user"] == user


def test_client_cannot_inject_identity_headers(gateway):
    srv, url, _, _ = gateway
    user = new_user()
    s = srv.api.create(user)
    forged = {"X-User-Id": "admin", "X-Session-Id": "AAAAAAAAAAAAAAAAAAAAAA",
              # Read as X-User-Id by CGI-style frameworks (HTTP_X_USER_ID).
              "X_User_Id": "admin", "X-User_Id": "admin", "X_Session_Id": "AAAAAAAAAAAAAAAAAAAAAA"}
    r = requests.get(url + "/", cookies={"session": s["token"]}, headers=forged, timeout=5)
    assert r.status_code == 200
    seen = r.json()
    assert seen["users"] == [user]
    assert sorted((k.lower(), v) for k, v in identity_headers(seen)) == \
        [("x-session-id", s["sessionId"]), ("x-user-id", user)], \
        f"the application received the client's identity headers: {identity_headers(seen)}"
    r = requests.get(url + "/", headers=forged, timeout=5)
    assert r.status_code == 401


def test_missing_tampered_revoked_and_expired_tokens_are_refused(gateway):
    srv, url, tmp, kind = gateway
    s = srv.api.create(new_user())
    assert requests.get(url + "/", timeout=5).status_code == 401
    tampered = s["token"][:-1] + ("A" if s["token"][-1] != "A" else "B")
    assert requests.get(url + "/", cookies={"session": tampered}, timeout=5).status_code == 401
    assert requests.get(url + "/", cookies={"session": "x" * 43}, timeout=5).status_code == 401
    srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    assert requests.get(url + "/", cookies={"session": s["token"]}, timeout=5).status_code == 401
    e = srv.api.create(new_user())
    assert requests.get(url + "/", cookies={"session": e["token"]}, timeout=5).status_code == 200
    srv.clock.advance(2 * 3600)  # --idle-timeout 1h, and no activity since
    assert requests.get(url + "/", cookies={"session": e["token"]}, timeout=5).status_code == 401
    # The proxy's access log never holds a token (it is in a cookie, not the URL).
    if kind == "nginx":  # (Caddy writes no access log unless told to)
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


# User ids a gateway would alter on their way to the application: HTTP
# parsers strip spaces around a header's value (so " admin" arrived as
# "admin", and "   " as no header at all), and C1 controls and separators
# split or garble header and log lines. Then ids that must pass unchanged.
ALTERED_BY_A_HEADER = [" admin", "admin ", "   ", "\tadmin", "\u00a0admin", "admin\u3000",
                       "admin\ufeff", "a\u0085b", "a\u0080b", "a\u009bb", "a\u2028b", "a\u2029b"]
KEPT_BY_A_HEADER = ["x except=- count=999", "Jean  Dupont", "tenant/élise", 'q"uote\\d=1', "日本"]


def test_the_application_sees_exactly_the_stored_user_id_or_nothing(gateway):
    """Each id is either refused at creation (400 naming userId) or reaches
    the application byte for byte, once, as the only identity header."""
    srv, url, _, kind = gateway
    wrong = []
    for uid in ALTERED_BY_A_HEADER + KEPT_BY_A_HEADER:
        r = srv.api.post("/sessions", json={"userId": uid})
        if r.status_code == 400:
            assert "userId" in problem_detail(r), problem_detail(r)
            continue
        assert r.status_code == 201, r.text
        s = r.json()
        assert s["userId"] == uid
        g = requests.get(url + "/", cookies={"session": s["token"]}, timeout=5)
        if g.status_code == 401:
            continue
        seen = sorted((k.lower(), v) for k, v in identity_headers(g.json()))
        if seen != [("x-session-id", s["sessionId"]), ("x-user-id", uid)]:
            wrong.append((uid, seen))
    assert not wrong, f"behind {kind} the application saw another user id than the stored one " \
                      f"(stored, seen): {wrong}"
    # The ids that a header keeps are accepted: the rule refuses no more than it must.
    for uid in KEPT_BY_A_HEADER:
        s = srv.api.create(uid)
        seen = requests.get(url + "/", cookies={"session": s["token"]}, timeout=5).json()
        assert seen["users"] == [uid]


def test_a_stored_user_id_a_header_would_alter_is_refused_not_forwarded(gateway):
    """Sessions stored before the identifier rule (the rows are changed behind
    a stopped server) are refused by GET /auth, so the application never
    sees " admin" as "admin"; the sessions themselves are kept as they are."""
    srv, url, _, kind = gateway
    tag = new_user("legacy")
    legacy = {f" {tag}": None, f"{tag} ": None, "   ": None, f"{tag}\u0085": None,
              f"a\u2028{tag}": None}
    for uid in legacy:
        legacy[uid] = srv.api.create(tag)
    ok = srv.api.create(new_user())
    srv.stop()
    for uid, s in legacy.items():
        db_exec(srv.data_dir, "UPDATE sessions SET user_id = ? WHERE id = ?", (uid, s["sessionId"]))
    srv.start()
    for uid, s in legacy.items():
        assert srv.api.get_session(s["sessionId"]).json()["userId"] == uid
        g = requests.get(url + "/", cookies={"session": s["token"]}, timeout=5)
        assert g.status_code == 401, f"behind {kind}, the stored id {uid!r} reached the " \
                                     f"application as {g.json()['users']!r}"
        r = srv.api.get("/auth", headers={"Authorization": f"Bearer {s['token']}"}, expect=401)
        assert "identifier rule" in problem_detail(r)
        assert "x-user-id" not in {k.lower() for k in r.headers}
    assert requests.get(url + "/", cookies={"session": ok["token"]}, timeout=5).status_code == 200
    assert "forward_auth_refused" in srv.log_text()


def test_a_forged_x_real_ip_cannot_satisfy_an_ip_binding(gateway):
    """The gateway tells sessiond the client's address in X-Real-IP; it must
    set it from the connection, whatever the client sent."""
    srv, url, _, kind = gateway
    here = srv.api.create(new_user(), ipAddress="127.0.0.1", bind={"ip": True})
    elsewhere = srv.api.create(new_user(), ipAddress="203.0.113.7", bind={"ip": True})
    claims = ({}, {"X-Real-IP": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.7"},
              {"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "203.0.113.7"})
    for forged in claims:
        r = requests.get(url + "/", cookies={"session": elsewhere["token"]}, headers=forged,
                         timeout=5)
        assert r.status_code == 401, f"behind {kind}, a session bound to 203.0.113.7 validated " \
                                     f"from 127.0.0.1 that sent {forged}"
    for forged in claims:
        r = requests.get(url + "/", cookies={"session": here["token"]}, headers=forged, timeout=5)
        assert r.status_code == 200, f"behind {kind}, the session bound to 127.0.0.1 was " \
                                     f"refused from 127.0.0.1 that sent {forged}"

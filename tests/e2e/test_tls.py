"""Native TLS: --tls-cert/--tls-key (TLS 1.2 and 1.3 only, Mozilla
"intermediate"), reload on SIGHUP, client certificates (mTLS) as caller
identities, and the handshake's defences (timeout, garbage, plain HTTP).

Certificates are made by the openssl CLI in a temporary directory; the
clients are real: curl, openssl s_client, Python's ssl module (requests,
http.client)."""
import functools
import hashlib
import http.client
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

import conftest
from conftest import (SESSIOND_BIN, Api, RawConn, Server, child_env, free_port, http_request_bytes,
                      new_user, observe_raw, wait_for)

MOZILLA_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
}
TLS13_DEFAULT = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


# --------------------------------------------------------------------------
# Certificates, made with the openssl CLI
# --------------------------------------------------------------------------
def _openssl(cwd, *args):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"
    return r.stdout


def _newkey(kind):
    return ["-newkey", "rsa:2048"] if kind == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]


def _make_ca(d, name):
    _openssl(d, "req", "-x509", *_newkey("ec"), "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}")
    return d / f"{name}.pem"


def _issue(d, ca, name, cn, ext, kind="ec"):
    """A certificate for CN=cn signed by CA `ca`: (cert path, key path)."""
    (d / f"{name}.ext").write_text(ext + "\n")
    _openssl(d, "req", *_newkey(kind), "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-set_serial", str(secrets.randbits(63)), "-days", "2", "-out", f"{name}.pem",
             "-extfile", f"{name}.ext")
    return d / f"{name}.pem", d / f"{name}.key"


SERVER_EXT = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
CLIENT_EXT = "extendedKeyUsage=clientAuth"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = _make_ca(d, "ca")
    other_ca = _make_ca(d, "otherca")
    p = SimpleNamespace(dir=d, ca=ca, other_ca=other_ca)
    p.cert, p.key = _issue(d, "ca", "server", "localhost", SERVER_EXT)
    p.cert2, p.key2 = _issue(d, "ca", "server2", "localhost", SERVER_EXT)
    p.rsa_cert, p.rsa_key = _issue(d, "ca", "server-rsa", "localhost", SERVER_EXT, kind="rsa")
    p.gateway = _issue(d, "ca", "gateway", "gateway", CLIENT_EXT)
    p.stranger = _issue(d, "ca", "stranger", "stranger", CLIENT_EXT)
    p.forged = _issue(d, "otherca", "forged", "gateway", CLIENT_EXT)  # same CN, wrong CA
    return p


@pytest.fixture(autouse=True)
def _trust_test_ca(pki, monkeypatch):
    # requests (the harness's health check and Api) verifies against our CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))


class TlsServer(Server):
    @property
    def direct_url(self):  # the harness's health probe
        return f"https://127.0.0.1:{self.port}"

    @property
    def url(self):  # never behind the (plain HTTP) Prism proxy
        return self.direct_url


def tls_server(make_server, cert, key, *args, start=True):
    s = make_server("--tls-cert", cert, "--tls-key", key, *args, start=False)
    s.__class__ = TlsServer
    s.api = Api(s.url)
    if start:
        s.start()
    return s


def client_ctx(pki, cert=None):
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


class TlsConn(RawConn):
    """RawConn over TLS: raw HTTP bytes inside a verified TLS connection."""

    def __init__(self, port, ctx, timeout=10.0, rcvbuf=None, strict_eof=False):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # a small window: the server's writes block sooner
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", port))
        # strict_eof: a TCP close without close_notify raises SSLEOFError
        # (Debian's Python ignores an unexpected EOF by default).
        if strict_eof:
            ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=not strict_eof)
        self.buf = b""
        self.eof = False
        self.send_failed = False

    def peer_cert(self):
        return self.sock.getpeercert(binary_form=True)


def der(cert_path):
    return ssl.PEM_cert_to_DER_cert(Path(cert_path).read_text())


def s_client(port, *args, ca=None):
    """openssl s_client; returns (negotiated protocol or None, cipher or None, output)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args]
    if ca:
        cmd += ["-CAfile", str(ca), "-verify_return_error"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    m = re.search(r"New, (\S+), Cipher is (\S+)", out)
    if r.returncode != 0 or not m or m.group(2) == "(NONE)":
        return None, None, out
    return m.group(1), m.group(2), out


def curl(*args):
    r = subprocess.run(["curl", "-sS", *map(str, args)], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    return r


# --------------------------------------------------------------------------
# The API over TLS
# --------------------------------------------------------------------------
def test_api_over_tls_with_curl_and_keep_alive(make_server, pki):
    srv = tls_server(make_server, pki.cert, pki.key)
    base = srv.url
    # curl, verifying the chain: create, then validate the token.
    r = curl("--cacert", pki.ca, "-X", "POST", f"{base}/sessions", "-H", "Content-Type: application/json",
             "-d", f'{{"userId":"{new_user()}"}}', "-w", "\n%{http_code}")
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "201", r.stdout + r.stderr
    created = srv.api.post("/sessions", json={"userId": new_user()}, expect=201).json()
    conftest.record_token(created["token"])
    r = curl("--cacert", pki.ca, "-X", "POST", f"{base}/sessions/validate", "-H",
             f"Authorization: Bearer {created['token']}", "-w", "\n%{http_code}")
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "200" and '"isValid":true' in body, r.stdout
    # One curl invocation, three requests: one connection (keep-alive).
    r = curl("--cacert", pki.ca, f"{base}/healthz", f"{base}/healthz", f"{base}/readyz",
             "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code}:%{num_connects} ")
    assert r.stdout.split() == ["200:1", "200:0", "200:0"], r.stdout + r.stderr
    # Without the CA curl refuses the certificate: it really is TLS.
    assert curl(f"{base}/healthz").returncode != 0

    # http.client on one TLS connection: several requests, the same socket.
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=client_ctx(pki), timeout=30)
    conn.connect()
    sock = conn.sock
    for _ in range(5):
        conn.request("POST", "/sessions/validate", headers={"Authorization": f"Bearer {created['token']}"})
        resp = conn.getresponse()
        assert resp.status == 200 and b'"isValid":true' in resp.read()
        assert conn.sock is sock
    conn.close()


def test_pipelined_and_large_requests_over_tls(make_server, pki):
    srv = tls_server(make_server, pki.cert, pki.key)
    c = TlsConn(srv.port, client_ctx(pki))
    try:
        # Two requests in one TLS record: answered in order.
        c.send(http_request_bytes("GET", "/healthz") + http_request_bytes("GET", "/readyz"))
        for path in ("/healthz", "/readyz"):
            r = c.read_response()
            assert r is not None and r.status == 200, f"{path}: {r!r}"
            observe_raw("GET", path, r)
        # A body spanning several TLS records (60 KB): read whole, answered
        # (400: data too large), and the connection still serves.
        big = ('{"userId":"%s","data":{"x":"%s"}}' % (new_user(), "a" * 60000)).encode()
        c.send(http_request_bytes("POST", "/sessions", headers=[("Content-Type", "application/json"),
                                                               ("Content-Length", str(len(big)))], body=big))
        r = c.read_response()
        assert r is not None and r.status == 400, r
        observe_raw("POST", "/sessions", r)
        c.send(http_request_bytes("GET", "/healthz"))
        r = c.read_response()
        assert r is not None and r.status == 200
    finally:
        c.close()


def test_large_responses_to_a_slow_reader_over_tls(make_server, pki):
    # 6 pipelined listings of ~2.5 MB each, read only after a pause: the
    # server's TLS writes fill the socket buffers and resume (partial writes).
    srv = tls_server(make_server, pki.cert, pki.key, "--max-data-bytes", "30000")
    user = new_user("big")
    for _ in range(100):
        s = srv.api.post("/sessions", json={"userId": user, "data": {"pad": "x" * 25000}}, expect=201).json()
        conftest.record_token(s["token"])
    path = f"/users/{user}/sessions?limit=100"
    c = TlsConn(srv.port, client_ctx(pki), timeout=30, rcvbuf=8192)
    try:
        c.send(b"".join(http_request_bytes("GET", path) for _ in range(6)))
        time.sleep(1)  # let the server run into a full socket
        c.sock.settimeout(30)
        bodies = []
        for _ in range(6):
            r = c.read_response(timeout=30)
            assert r is not None and r.status == 200, r
            bodies.append(r.body)
        assert len(bodies[0]) > 2500000 and all(b == bodies[0] for b in bodies)
        assert len(srv.api.list_user(user, limit=100).json()["sessions"]) == 100
    finally:
        c.close()


def test_the_server_closes_tls_cleanly(make_server, pki):
    # Connection: close, and an idle timeout: both end with close_notify, not
    # a bare TCP close (which strict_eof turns into SSLEOFError).
    # (3 s: long enough that a slow handshake under ASan is not cut short
    # before its request; the wait below is 15 s.)
    srv = tls_server(make_server, pki.cert, pki.key, "--connection-timeout", "3s")
    c = TlsConn(srv.port, client_ctx(pki), strict_eof=True)
    try:
        c.send(http_request_bytes("GET", "/healthz", headers=[("Connection", "close")]))
        r = c.read_response()
        assert r is not None and r.status == 200 and r.header("Connection") == "close"
        assert c.wait_closed(timeout=10)
    finally:
        c.close()
    c = TlsConn(srv.port, client_ctx(pki), strict_eof=True)
    try:
        c.send(http_request_bytes("GET", "/healthz"))
        assert c.read_response().status == 200
        assert c.wait_closed(timeout=15), "an idle TLS connection outlived the connection timeout"
    finally:
        c.close()


# --------------------------------------------------------------------------
# Protocol versions and ciphers
# --------------------------------------------------------------------------
def test_only_tls12_and_tls13_are_accepted(make_server, pki):
    srv = tls_server(make_server, pki.cert, pki.key, "--log-level", "debug")
    for flag in ("-tls1", "-tls1_1"):
        before = srv.log_text().count("tls handshake failed")
        proto, cipher, out = s_client(srv.port, flag, "-cipher", "DEFAULT@SECLEVEL=0")
        assert proto is None and cipher is None, f"{flag} was accepted:\n{out}"
        # The client did try (the server saw and refused the handshake).
        wait_for(lambda: srv.log_text().count("tls handshake failed") > before, timeout=10,
                 what=f"the server's refusal of {flag}")
    assert "unsupported protocol" in srv.log_text()
    assert s_client(srv.port, "-tls1_2", ca=pki.ca)[0] == "TLSv1.2"
    assert s_client(srv.port, "-tls1_3", ca=pki.ca)[0] == "TLSv1.3"
    srv.api.get("/healthz", expect=200)


def test_renegotiation_is_refused(make_server, pki):
    srv = tls_server(make_server, pki.cert, pki.key)
    # s_client: "R" on its input asks for a TLS 1.2 renegotiation.
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-servername",
                          "localhost", "-tls1_2", "-CAfile", str(pki.ca)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watchdog = threading.Timer(30, p.kill)
    watchdog.start()
    out = ""
    try:
        p.stdin.write(b"R\n")
        p.stdin.flush()
        for line in p.stdout:  # until the refusal, or s_client's exit
            out += line.decode(errors="replace")
            if "no renegotiation" in out:
                break
    finally:
        watchdog.cancel()
        p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()
    assert "RENEGOTIATING" in out and "no renegotiation" in out, out[-1500:]
    srv.api.get("/healthz", expect=200)


def test_cipher_scan_shows_only_the_intermediate_profile(make_server, pki):
    # An RSA certificate, so that ECDHE-RSA and DHE-RSA suites are possible too.
    srv = tls_server(make_server, pki.rsa_cert, pki.rsa_key)
    tls12 = [c for c in _openssl(pki.dir, "ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").strip().split(":")
             if not c.startswith("TLS_")]
    assert len(tls12) > 30
    with ThreadPoolExecutor(4) as ex:
        got = dict(zip(tls12, ex.map(
            lambda c: s_client(srv.port, "-tls1_2", "-cipher", f"{c}:@SECLEVEL=0")[1], tls12)))
    accepted = {c for c, neg in got.items() if neg}
    assert accepted <= MOZILLA_TLS12, f"outside the profile: {sorted(accepted - MOZILLA_TLS12)}"
    rsa_suites = {c for c in MOZILLA_TLS12 if "-RSA-" in c}
    assert rsa_suites <= accepted, f"profile suites refused: {sorted(rsa_suites - accepted)}"
    for suite in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                  "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"):
        proto, cipher, out = s_client(srv.port, "-tls1_3", "-ciphersuites", suite)
        assert (cipher == suite) == (suite in TLS13_DEFAULT), f"{suite}: {cipher}\n{out[-800:]}"


# --------------------------------------------------------------------------
# What is not TLS
# --------------------------------------------------------------------------
def test_plain_http_on_the_tls_port_gets_no_http_answer(make_server, pki):
    srv = tls_server(make_server, pki.cert, pki.key)
    c = RawConn(srv.port)
    try:
        c.send(http_request_bytes("GET", "/healthz"))
        assert c.wait_closed(timeout=15), "the server kept a plain-HTTP connection open"
        assert not c.buf.startswith(b"HTTP/"), f"plain HTTP was answered: {c.buf[:80]!r}"
        assert b"healthz" not in c.buf and b"200" not in c.buf[:16]
    finally:
        c.close()
    # requests over plain http:// fails too, and the server is unharmed.
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=10)
    srv.api.get("/healthz", expect=200)


def _client_hello(pki):
    """The first flight of a real TLS client, as bytes."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx(pki).wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_a_stalled_handshake_is_closed_by_the_timeout(make_server, pki):
    # The handshake must end within the request timeout, capped by
    # --connection-timeout (here 2 s).
    srv = tls_server(make_server, pki.cert, pki.key, "--connection-timeout", "2s")
    hello = _client_hello(pki)
    silent, half = RawConn(srv.port), RawConn(srv.port)
    try:
        half.send(hello[:len(hello) // 2])  # half a ClientHello, then nothing
        assert silent.wait_closed(timeout=20), "a silent TLS connection stayed open"
        assert half.wait_closed(timeout=20), "a half-sent ClientHello kept the connection open"
        assert silent.buf == b""
    finally:
        silent.close()
        half.close()
    srv.api.get("/healthz", expect=200)


def test_garbage_during_the_handshake_does_not_hurt(make_server, pki):
    srv = tls_server(make_server, pki.cert, pki.key)
    hello = _client_hello(pki)
    rnd = secrets.SystemRandom()
    payloads = [os.urandom(4096), b"\x16\x03\x01\xff\xff" + os.urandom(2000), b"\x16\x03\x03\x00\x05hello",
                hello + os.urandom(3000), hello[:5] + os.urandom(len(hello) - 5), b"\x00" * 10000]
    for i in range(20):  # ClientHellos with bytes flipped
        b = bytearray(hello)
        for _ in range(1 + i % 4):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        payloads.append(bytes(b))
    for p in payloads:
        c = RawConn(srv.port)
        try:
            c.send(p)
            c.shutdown_write()
            assert c.wait_closed(timeout=15)
            assert not c.buf.startswith(b"HTTP/")
        finally:
            c.close()
    assert srv.running()
    srv.api.get("/healthz", expect=200)


# --------------------------------------------------------------------------
# Certificates from files: start-up errors and SIGHUP reload
# --------------------------------------------------------------------------
def _run(tmp_path, *args):
    return subprocess.run([SESSIOND_BIN, "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
                           str(tmp_path / "d"), *map(str, args)], capture_output=True, text=True,
                          timeout=30, env=child_env(), stdin=subprocess.DEVNULL)


def test_bad_certificate_or_key_is_a_clear_start_error(tmp_path, pki):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [
        (("--tls-cert", tmp_path / "missing.pem", "--tls-key", pki.key), "cannot read TLS certificate"),
        (("--tls-cert", junk, "--tls-key", pki.key), "cannot load the TLS certificate"),
        (("--tls-cert", pki.cert, "--tls-key", junk), "cannot load the TLS key"),
        (("--tls-cert", pki.cert, "--tls-key", pki.key2), "does not match"),
        (("--tls-cert", pki.cert), "go together"),
        (("--tls-cert", pki.cert, "--tls-key", pki.key, "--tls-client-ca", junk), "client CA"),
        (("--tls-cert", pki.cert, "--tls-key", pki.key, "--tls-client-auth", "maybe"), "optional or require"),
    ]
    for args, needle in cases:
        r = _run(tmp_path, *args)
        assert r.returncode != 0, f"{args}: started anyway"
        assert needle in r.stderr, f"{args}: {r.stderr}"


def test_sighup_reloads_the_certificate_without_dropping_connections(make_server, pki, tmp_path):
    cert, key = tmp_path / "tls.pem", tmp_path / "tls.key"
    cert.write_bytes(pki.cert.read_bytes())
    key.write_bytes(pki.key.read_bytes())
    srv = tls_server(make_server, cert, key)
    ctx = client_ctx(pki)
    old = TlsConn(srv.port, ctx)
    try:
        assert old.peer_cert() == der(pki.cert)
        old.send(http_request_bytes("GET", "/healthz"))
        assert old.read_response().status == 200

        cert.write_bytes(pki.cert2.read_bytes())
        key.write_bytes(pki.key2.read_bytes())
        os.kill(srv.pid, signal.SIGHUP)
        wait_for(lambda: "TLS certificate reloaded" in srv.log_text(), timeout=10, what="the reload")
        new = TlsConn(srv.port, ctx)
        try:
            assert new.peer_cert() == der(pki.cert2), "a new connection still sees the old certificate"
            new.send(http_request_bytes("GET", "/healthz"))
            assert new.read_response().status == 200
        finally:
            new.close()
        # The connection opened before the reload keeps working.
        old.send(http_request_bytes("GET", "/readyz"))
        r = old.read_response()
        assert r is not None and r.status == 200

        # A broken certificate at reload: logged, the current one stays.
        cert.write_text("garbage\n")
        os.kill(srv.pid, signal.SIGHUP)
        wait_for(lambda: "keeping the current TLS certificate" in srv.log_text(), timeout=10,
                 what="the refused reload")
        # A key that does not match the certificate: the same.
        cert.write_bytes(pki.cert.read_bytes())
        os.kill(srv.pid, signal.SIGHUP)
        wait_for(lambda: srv.log_text().count("keeping the current TLS certificate") >= 2, timeout=10,
                 what="the second refused reload")
        assert "does not match" in srv.log_text()
        again = TlsConn(srv.port, ctx)
        try:
            assert again.peer_cert() == der(pki.cert2)
        finally:
            again.close()
        old.send(http_request_bytes("GET", "/healthz"))
        assert old.read_response().status == 200
    finally:
        old.close()
    assert srv.running()


# --------------------------------------------------------------------------
# mTLS: client certificates as caller identities
# --------------------------------------------------------------------------
def api_as(srv, cert):
    """An Api whose connections present the client certificate (cert, key)."""
    a = Api(srv.url)
    a._sess().cert = (str(cert[0]), str(cert[1]))
    return a


def _keys_file(tmp_path, api_key):
    p = tmp_path / "keys"
    p.write_text("# id  sha256(key) or cert:<CN>  scopes\n"
                 "gw-cert cert:gateway validate,sessions\n"
                 f"app {hashlib.sha256(api_key.encode()).hexdigest()} sessions,admin\n")
    return p


def test_client_certificates_authenticate_callers(make_server, pki, tmp_path):
    api_key = secrets.token_urlsafe(32)
    srv = tls_server(make_server, pki.cert, pki.key, "--api-keys", _keys_file(tmp_path, api_key),
                     "--tls-client-ca", pki.ca)
    body = {"userId": new_user()}
    # No certificate and no key: 401 (health stays public).
    srv.api.get("/healthz", expect=200)
    srv.api.post("/sessions", json=body, expect=401)
    # A certificate from the CA whose CN is mapped: its scopes.
    a = api_as(srv, pki.gateway)
    s = a.post("/sessions", json=body, expect=201).json()
    conftest.record_token(s["token"])
    a.post("/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"}, expect=200)
    r = a.post("/sessions/bulk-delete", json={"userIds": [body["userId"]]}, expect=403)
    assert "client certificate" in r.json()["detail"]
    # An X-Api-Key, when sent, decides (even with a certificate).
    a.post("/sessions", json=body, headers={"X-Api-Key": "wrong"}, expect=401)
    # The audit trail names the certificate's caller (the key-file id).
    ev = a.get(f"/sessions/{s['sessionId']}/events", headers={"X-Api-Key": api_key}, expect=200).json()
    assert ev["events"][0]["event"] == "created" and ev["events"][0]["actor"] == "gw-cert", ev
    a.post("/sessions/bulk-delete", json={"userIds": [body["userId"]]}, headers={"X-Api-Key": api_key},
           expect=200)
    # A verified certificate whose CN is not in the key file: 401.
    r = api_as(srv, pki.stranger).post("/sessions", json=body, expect=401)
    assert "certificate" in r.json()["detail"]
    # The same CN from another CA: the handshake is refused.
    forged = requests.Session()
    forged.cert = (str(pki.forged[0]), str(pki.forged[1]))
    with pytest.raises(requests.exceptions.ConnectionError):
        forged.post(f"{srv.url}/sessions", json=body, timeout=10)
    # A valid X-Api-Key without a certificate still works over TLS.
    srv.api.post("/sessions", json={"userId": new_user()}, headers={"X-Api-Key": api_key}, expect=201)
    # And curl with the client certificate.
    r = curl("--cacert", pki.ca, "--cert", pki.gateway[0], "--key", pki.gateway[1], "-X", "POST",
             f"{srv.url}/sessions", "-H", "Content-Type: application/json", "-d",
             f'{{"userId":"{new_user()}"}}', "-o", "/dev/null", "-w", "%{http_code}")
    assert r.stdout == "201", r.stdout + r.stderr
    log = srv.log_text()
    assert "reason=unmapped_certificate" in log and api_key not in log


def test_required_client_certificates_refuse_the_handshake_without_one(make_server, pki, tmp_path,
                                                                       monkeypatch):
    api_key = secrets.token_urlsafe(32)
    srv = tls_server(make_server, pki.cert, pki.key, "--api-keys", _keys_file(tmp_path, api_key),
                     "--tls-client-ca", pki.ca, "--tls-client-auth", "require", start=False)
    # The harness's health probe needs a certificate now.
    monkeypatch.setattr(conftest.requests, "get",
                        functools.partial(requests.get, cert=(str(pki.gateway[0]), str(pki.gateway[1]))))
    srv.start()
    monkeypatch.undo()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    r = curl("--cacert", pki.ca, f"{srv.url}/healthz")
    assert r.returncode != 0, "a client without a certificate completed the handshake"
    r = curl("--cacert", pki.ca, "--cert", pki.gateway[0], "--key", pki.gateway[1], f"{srv.url}/healthz",
             "-o", "/dev/null", "-w", "%{http_code}")
    assert r.stdout == "200", r.stdout + r.stderr
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{srv.url}/healthz", cert=(str(pki.forged[0]), str(pki.forged[1])), timeout=10)
    assert srv.running()



def test_sessionctl_speaks_tls_with_its_cacert(make_server, pki):
    from test_sessionctl import ctl
    srv = tls_server(make_server, pki.cert, pki.key)
    p = ctl(srv.url, "--cacert", pki.ca, "stats")
    assert "ready" in p.stdout and "yes" in p.stdout, p.stdout
    p = ctl(srv.url, "stats", expect=None)  # the system CAs do not know the test CA
    assert p.returncode != 0 and "certificate" in p.stderr, p.stderr

"""End-to-end harness for sessiond.

Starts the real binary (env SESSIOND_BIN, default <repo>/build/sessiond) on a
free loopback port with a private data dir, talks to it over HTTP, and stops
it (by PID) when the test is done.  Every response that goes through the
helpers here is checked for the common headers and for leaked tokens; at the
end of the session every log file and data file the servers produced is
scanned for every token the suite was issued.

Run:  /usr/bin/python3 -m pytest tests/e2e      (from the repo root)

SESSIOND_VIA_PRISM=1 puts a validating proxy (Prism, tools/api) in front of
every server: `server.url` and `server.api` then go through it, and every
response it relays is checked against docs/openapi.yaml (see check_violations).
Raw-socket helpers (`server.port`) still talk to sessiond directly; tests that
cannot pass through a proxy carry @pytest.mark.no_prism and are skipped then.
"""

import array
import base64
import json as jsonlib
import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

import pgserver
import redisserver

REPO = Path(__file__).resolve().parents[2]
SESSIOND_BIN = os.environ.get("SESSIOND_BIN") or str(REPO / "build" / "sessiond")

START_TIMEOUT = 10.0      # seconds to wait for /healthz after spawning
VIA_PRISM = os.environ.get("SESSIOND_VIA_PRISM") == "1"
PRISM_BIN = REPO / "tools" / "api" / "node_modules" / ".bin" / "prism"
PRISM_START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0       # seconds to wait for exit after SIGTERM
HTTP_TIMEOUT = 30.0       # per-request timeout (generous for ASan builds)

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_B64URL_RUN = re.compile(rb"[A-Za-z0-9_-]{43,}")

SESSION_REQUIRED = ("sessionId", "userId", "mfa", "data", "createdAt",
                    "lastSeen", "expiry", "absoluteExpiry", "version")
SESSION_OPTIONAL = ("deviceId", "deviceInfo", "userAgent", "ipAddress", "geoLocation", "bind", "acr", "amr",
                    "authTime", "geoGroup", "signals", "stepUpRequired")

# --------------------------------------------------------------------------
# Global bookkeeping: issued tokens and every artifact (log file / data dir)
# --------------------------------------------------------------------------
ISSUED_TOKENS = []
_TOKEN_SET = set()
_TOKEN_LOCK = threading.Lock()
ARTIFACT_DIRS = []          # per-server work dirs (logs + data dir inside)
_LIVE_SERVERS = []          # safety net: anything still running at the end

# SESSIOND_TEST_STORE=postgres: every server runs on its own database of one private
# PostgreSQL (pgserver.py), started on first use and stopped at the end.
PG_MODE = pgserver.enabled()
_PG = []


def pg():
    if not _PG:
        _PG.append(pgserver.PgServer())
    return _PG[0]


# SESSIOND_TEST_CACHE=redis (with SESSIOND_TEST_STORE=postgres): every server
# also gets --cache on one private Redis (redisserver.py), started on first use.
CACHE_MODE = PG_MODE and redisserver.enabled()
_REDIS = []


def redis():
    if not _REDIS:
        _REDIS.append(redisserver.RedisServer())
    return _REDIS[0]


# One definition of each hook: a second def of the same name would silently
# replace the first.
def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only(reason): needs the embedded store (skipped with "
                                       "SESSIOND_TEST_STORE=postgres)")
    config.addinivalue_line("markers", "postgres_only: needs SESSIOND_TEST_STORE=postgres")
    config.addinivalue_line("markers", "no_prism(reason): skipped when SESSIOND_VIA_PRISM=1 "
                                       "(the test needs sessiond's own connection or framing behaviour)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        m = item.get_closest_marker("no_prism")
        if m and VIA_PRISM:
            item.add_marker(pytest.mark.skip(reason="not through Prism: " + (m.args[0] if m.args else "")))
        m = item.get_closest_marker("sqlite_only")
        if m and PG_MODE:
            item.add_marker(pytest.mark.skip(reason="embedded store only: " + (m.args[0] if m.args else "")))
        if item.get_closest_marker("postgres_only") and not PG_MODE:
            item.add_marker(pytest.mark.skip(reason="needs SESSIOND_TEST_STORE=postgres"))


def record_token(token):
    with _TOKEN_LOCK:
        if token not in _TOKEN_SET:
            _TOKEN_SET.add(token)
            ISSUED_TOKENS.append(token)


def issued_token_set():
    with _TOKEN_LOCK:
        return frozenset(_TOKEN_SET)


def find_leaked_tokens(blob):
    """Return issued tokens appearing verbatim in blob (bytes or str)."""
    if isinstance(blob, str):
        blob = blob.encode("utf-8", "surrogateescape")
    tokens = issued_token_set()
    if not tokens:
        return []
    found = []
    for m in _B64URL_RUN.finditer(blob):
        run = m.group()
        for i in range(len(run) - 42):
            cand = run[i:i + 43].decode()
            if cand in tokens:
                found.append(cand)
    return found


def assert_no_token_leak(where, blob):
    leaked = find_leaked_tokens(blob)
    assert not leaked, f"{where}: response contains an issued session token ({leaked[0][:6]}...)"


# --------------------------------------------------------------------------
# Time / shape helpers
# --------------------------------------------------------------------------
def parse_time(value, field="time"):
    assert isinstance(value, str) and TIME_RE.match(value), \
        f"{field}={value!r} is not RFC 3339 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)"
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def fmt_time(dt):
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def utcnow():
    return datetime.now(timezone.utc)


def seconds_between(a, b):
    return (parse_time(b) - parse_time(a)).total_seconds()


def new_user(prefix="user"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def check_session(obj, *, with_token=False, where="session"):
    assert isinstance(obj, dict), f"{where}: expected a JSON object, got {obj!r}"
    for k in SESSION_REQUIRED:
        assert k in obj, f"{where}: required field {k!r} missing: {obj}"
    # Fields beyond the contract are checked once, in test_sessions.py
    # (test_session_json_has_only_contract_fields), not on every response.
    assert SESSION_ID_RE.match(obj["sessionId"]), f"{where}: sessionId {obj['sessionId']!r} is not 22 base64url chars"
    if with_token:
        assert "token" in obj, f"{where}: create response has no token"
        assert TOKEN_RE.match(obj["token"]), f"{where}: token is not 43 base64url chars"
        assert len(base64.urlsafe_b64decode(obj["token"] + "=")) == 32, f"{where}: token does not decode to 256 bits"
    else:
        assert "token" not in obj, f"{where}: token must only be returned by create"
    assert isinstance(obj["userId"], str)
    assert obj["mfa"] in (True, False), f"{where}: mfa must be a bool, got {obj['mfa']!r}"
    assert isinstance(obj["data"], dict), f"{where}: data must be an object, got {obj['data']!r}"
    for k in ("createdAt", "lastSeen", "expiry", "absoluteExpiry"):
        parse_time(obj[k], f"{where}.{k}")
    assert isinstance(obj["version"], int) and not isinstance(obj["version"], bool) and obj["version"] >= 1, \
        f"{where}: bad version {obj['version']!r}"
    assert parse_time(obj["expiry"]) <= parse_time(obj["absoluteExpiry"]), \
        f"{where}: expiry {obj['expiry']} is after absoluteExpiry {obj['absoluteExpiry']}"
    for k in SESSION_OPTIONAL:
        if k in obj:
            assert obj[k] is not None, f"{where}: optional field {k} must be absent, not null, when unset"
    return obj


# --------------------------------------------------------------------------
# Common response checks (used for every response the suite sees)
# --------------------------------------------------------------------------
# The only answers a handler lets caches keep (sd_req_set_cache_control):
# a 2xx of these paths carries exactly this Cache-Control; every other
# answer, and any error of these paths, carries no-store.
CACHEABLE = {"/.well-known/jwks.json": "public, max-age=300"}


def check_common_headers(status, headers, body, where, path=None, head=False):
    """headers: mapping or list of (name, value). body: bytes. path: the
    request's path, for the CACHEABLE exceptions. head: the answer to a HEAD
    request, which has no body to check."""
    if isinstance(headers, dict) or hasattr(headers, "items"):
        items = list(headers.items())
    else:
        items = list(headers)
    h = {}
    for k, v in items:
        h.setdefault(k.lower(), v)
    assert h.get("x-content-type-options", "").strip().lower() == "nosniff", \
        f"{where}: {status} response lacks 'X-Content-Type-Options: nosniff' (headers: {dict(h)})"
    cacheable = CACHEABLE.get((path or "").split("?")[0]) if 200 <= status < 300 else None
    if cacheable:
        assert h.get("cache-control") == cacheable, \
            f"{where}: {status} response has Cache-Control {h.get('cache-control')!r}, want {cacheable!r}"
    else:
        assert "no-store" in h.get("cache-control", "").lower(), \
            f"{where}: {status} response lacks 'Cache-Control: no-store' (headers: {dict(h)})"
    assert h.get("x-request-id", "").strip(), f"{where}: {status} response lacks X-Request-Id"
    if status not in (204, 304):
        # A 204 has no body, so a Content-Type on it would be meaningless.
        assert h.get("content-type", "").strip(), f"{where}: {status} response lacks Content-Type"
    if status >= 400:
        ctype = h.get("content-type", "").split(";")[0].strip().lower()
        assert ctype == "application/problem+json", \
            f"{where}: error {status} has Content-Type {h.get('content-type')!r}, want application/problem+json"
    if status >= 400 and head:
        assert not body, f"{where}: a HEAD answer with a body"
    elif status >= 400:
        try:
            prob = jsonlib.loads(body)
        except ValueError:
            raise AssertionError(f"{where}: error {status} body is not JSON: {body[:300]!r}")
        assert isinstance(prob, dict), f"{where}: problem body is not an object: {prob!r}"
        for k in ("type", "title", "detail"):
            assert isinstance(prob.get(k), str), f"{where}: problem body lacks string {k!r}: {prob}"
        assert prob.get("status") == status, f"{where}: problem.status {prob.get('status')!r} != HTTP status {status}"
    if status == 405:
        assert h.get("allow", "").strip(), f"{where}: 405 without an Allow header"
    return h


def check_violations(status, headers, body, where):
    """Under SESSIOND_VIA_PRISM: fail on any departure from docs/openapi.yaml
    that Prism reports in its `sl-violations` header. A response departure
    always fails. A request departure fails unless sessiond refused the
    request too (4xx): a test may send a malformed request on purpose, but
    the server must then say no, and its answer must still match the spec."""
    h = {k.lower(): v for k, v in (headers.items() if hasattr(headers, "items") else headers)}
    if "application/problem+json" in h.get("content-type", "") and body:
        try:
            ptype = jsonlib.loads(body).get("type", "")
        except (ValueError, AttributeError):
            ptype = ""
        assert not str(ptype).startswith("https://stoplight.io/prism/"), \
            f"{where}: Prism answered itself instead of sessiond: {body[:600]!r}"
    raw = h.get("sl-violations")
    if raw is None:
        return
    if raw.startswith("Too many violations!"):
        # Prism cut the list at 8 KiB. Request departures come first; any
        # response departure is also in Prism's log, which the factory checks
        # when it stops the proxy (PrismProxy.response_violations).
        parts = set(re.findall(r'"location":\["(\w+)"', raw))
        assert parts == {"request"} and 400 <= status < 500, \
            f"{where}: {status} with more departures than Prism lists: {raw[:600]}"
        return
    try:
        violations = jsonlib.loads(raw)
    except ValueError:
        raise AssertionError(f"{where}: Prism reports violations it could not list: {raw[:600]}")
    bad = [v for v in violations if v.get("location", [""])[0] == "response"
           or not 400 <= status < 500]
    assert not bad, (f"{where}: {status} departs from docs/openapi.yaml: "
                     + "; ".join(f"{'.'.join(map(str, v.get('location', [])))}: {v.get('message')}" for v in bad))


def observe_response(method, path, status, headers, body, where=None):
    """Checks applied to every response; records tokens from create responses."""
    where = where or f"{method} {path}"
    if VIA_PRISM:
        check_violations(status, headers, body, where)
    check_common_headers(status, headers, body, where, path, head=method.upper() == "HEAD")
    is_create = method.upper() == "POST" and path.split("?")[0] == "/sessions" and status == 201
    if is_create:
        obj = jsonlib.loads(body)
        tok = obj.get("token")
        assert isinstance(tok, str), f"{where}: 201 create response without token"
        record_token(tok)
        hdr_blob = "\n".join(f"{k}: {v}" for k, v in (headers.items() if hasattr(headers, "items") else headers))
        assert_no_token_leak(where + " (headers)", hdr_blob)
        # The token may appear in the body only as the "token" field.
        rest = dict(obj)
        rest.pop("token", None)
        assert_no_token_leak(where + " (body besides 'token')", jsonlib.dumps(rest, ensure_ascii=False))
    else:
        hdr_blob = "\n".join(f"{k}: {v}" for k, v in (headers.items() if hasattr(headers, "items") else headers))
        assert_no_token_leak(where, hdr_blob.encode("utf-8", "surrogateescape") + b"\n" + (body or b""))


def problem_detail(resp):
    try:
        return resp.json().get("detail", "")
    except ValueError:
        return ""


# --------------------------------------------------------------------------
# HTTP client wrapper
# --------------------------------------------------------------------------
_UNSET = object()


class Api:
    def __init__(self, base_url):
        self.base = base_url
        self._local = threading.local()

    def _sess(self):
        s = getattr(self._local, "s", None)
        if s is None:
            s = requests.Session()
            self._local.s = s
        return s

    def request(self, method, path, *, json=_UNSET, data=None, headers=None, params=None,
                expect=None, timeout=HTTP_TIMEOUT):
        hdrs = dict(headers or {})
        body = data
        if json is not _UNSET:
            body = jsonlib.dumps(json, ensure_ascii=False).encode("utf-8")
            if not any(k.lower() == "content-type" for k in hdrs):
                hdrs["Content-Type"] = "application/json"
        r = self._sess().request(method, self.base + path, data=body, headers=hdrs,
                                 params=params, timeout=timeout, allow_redirects=False)
        observe_response(method, path, r.status_code, r.headers, r.content)
        if expect is not None:
            allowed = expect if isinstance(expect, (tuple, list, set)) else (expect,)
            assert r.status_code in allowed, \
                f"{method} {path}: expected status {expect}, got {r.status_code}: {r.text[:500]}"
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # convenience --------------------------------------------------------
    def create(self, user_id=None, **fields):
        body = {"userId": user_id if user_id is not None else new_user()}
        body.update(fields)
        r = self.post("/sessions", json=body, expect=201)
        obj = r.json()
        check_session(obj, with_token=True, where="create response")
        return obj

    def get_session(self, sid, expect=200):
        return self.get(f"/sessions/{sid}", expect=expect)

    def validate(self, token, touch=True, expect=200):
        params = None if touch else {"touch": "false"}
        r = self.post("/sessions/validate", headers={"Authorization": f"Bearer {token}"},
                      params=params, expect=expect)
        return r.json()

    def validate_id(self, sid):
        return self.get(f"/sessions/{sid}/validate", expect=200).json()

    def list_user(self, user_id, **params):
        return self.get(f"/users/{quote(user_id, safe='')}/sessions", params=params or None)


# --------------------------------------------------------------------------
# Server process management
# --------------------------------------------------------------------------
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0")
    if extra:
        env.update(extra)
    return env


class Server:
    def __init__(self, workdir, args=(), env=None, data_dir=None, port=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.args = [str(a) for a in args]
        self.env_extra = dict(env or {})
        self.proc = None
        self.prism = None
        self.starts = 0
        self.log_paths = []
        self.api = Api(self.url)
        ARTIFACT_DIRS.append(self.workdir)
        if self.data_dir.resolve().parent != self.workdir.resolve():
            ARTIFACT_DIRS.append(self.data_dir)

    @property
    def url(self):
        """The HTTP-level address tests use: Prism's when it is in front."""
        return self.prism.url if self.prism else self.direct_url

    @property
    def direct_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def db_path(self):
        return self.data_dir / "sessiond.db"

    def store_args(self):
        """--store for this server's database in PostgreSQL mode; [] otherwise."""
        cache = ["--cache", redis().url()] if CACHE_MODE else []
        return ["--store", pg().url(pg().database_for(self.data_dir)), *cache] if PG_MODE else []

    def command(self):
        return [SESSIOND_BIN, "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data_dir), *self.store_args(), *self.args]

    def log_text(self):
        out = []
        for p in self.log_paths:
            try:
                out.append(Path(p).read_text(errors="replace"))
            except OSError:
                pass
        return "".join(out)

    def _log_tail(self, n=4000):
        t = self.log_text()
        return t[-n:] if t else "(empty stderr)"

    def start(self):
        if not os.path.exists(SESSIOND_BIN):
            pytest.fail(f"sessiond binary not found at {SESSIOND_BIN} (build with `make`, or set SESSIOND_BIN)")
        assert self.proc is None, "server already running"
        self.starts += 1
        err_path = self.workdir / f"stderr.{self.starts}.log"
        out_path = self.workdir / f"stdout.{self.starts}.log"
        self.log_paths.append(err_path)
        with open(err_path, "wb") as errf, open(out_path, "wb") as outf:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=outf,
                                         stderr=errf, env=child_env(self.env_extra), cwd=str(self.workdir))
        _LIVE_SERVERS.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                pytest.fail(f"sessiond exited with {rc} during startup; cmd={self.command()}\n"
                            f"stderr:\n{self._log_tail()}")
            try:
                r = requests.get(self.direct_url + "/healthz", timeout=2)
                if r.status_code == 200:
                    if VIA_PRISM and self.prism is None:
                        self.prism = PrismProxy(self.workdir, self.port).start()
                        self.api.base = self.prism.url
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill9()
                pytest.fail(f"sessiond did not answer GET /healthz 200 within {START_TIMEOUT}s; "
                            f"stderr:\n{self._log_tail()}")
            time.sleep(0.02)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, expect_rc=0):
        """Graceful stop by PID; asserts the exit code."""
        assert self.proc is not None, "stop() on a server that is not running"
        proc = self.proc
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            self.proc = None
            pytest.fail(f"sessiond did not exit within {STOP_TIMEOUT}s of {signal.Signals(sig).name}; "
                        f"stderr:\n{self._log_tail()}")
        self.proc = None
        if expect_rc is not None:
            assert rc == expect_rc, (f"sessiond exited with {rc} after {signal.Signals(sig).name} "
                                     f"(want {expect_rc}); stderr:\n{self._log_tail()}")
        return rc

    def kill9(self):
        if self.proc is None:
            return
        proc = self.proc
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.proc = None

    def restart(self):
        if self.running():
            self.stop()
        else:
            self.proc = None
        return self.start()

    def close(self):
        """Finalizer: stop if still running (asserting exit 0)."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            self.proc = None
            raise AssertionError(f"sessiond (port {self.port}) died during the test with exit code {rc}; "
                                 f"stderr:\n{self._log_tail()}")
        self.stop()


class PrismProxy:
    """`prism proxy docs/openapi.yaml <sessiond>` on a free port; it outlives
    restarts of its server (same port) and is stopped with the factory."""

    def __init__(self, workdir, upstream_port, spec=None):
        self.port = free_port()
        self.upstream_port = upstream_port
        self.spec = Path(spec) if spec else REPO / "docs" / "openapi.yaml"
        self.log_path = Path(workdir) / "prism.log"
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        if not PRISM_BIN.exists():
            pytest.fail(f"{PRISM_BIN} not found: run `make tools/api/node_modules/.stamp` (npm ci in tools/api)")
        cmd = [str(PRISM_BIN), "proxy", str(self.spec),
               f"http://127.0.0.1:{self.upstream_port}", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                         cwd=str(REPO), start_new_session=True)
        _LIVE_PRISMS.append(self)
        deadline = time.monotonic() + PRISM_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.proc = None
                pytest.fail(f"prism exited during startup:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"prism did not answer within {PRISM_START_TIMEOUT}s:\n"
                            f"{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def response_violations(self):
        """Every response departure Prism logged (its header can be cut)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [ln.strip() for ln in text.splitlines() if "Violation: response" in ln]

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # its own session: prism and any child
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


_LIVE_PRISMS = []


def skip_if_prism_cannot_relay(raw_json_body):
    """Prism parses an application/json body before relaying it and answers a
    body that is not JSON at all itself, so such a request never reaches
    sessiond through it: skip under SESSIOND_VIA_PRISM (the direct passes
    still run it)."""
    if not VIA_PRISM:
        return
    try:
        jsonlib.loads(raw_json_body) if raw_json_body else None
    except ValueError:
        pytest.skip("Prism cannot relay a body that is not JSON")


def _write_config(workdir, config):
    path = Path(workdir) / "sessiond.conf"
    if isinstance(config, dict):
        text = "".join(f"{k} = {v}\n" for k, v in config.items())
    else:
        text = config
    path.write_text(text)
    return path


class ServerFactory:
    def __init__(self, tmp_path_factory):
        self.tmp = tmp_path_factory
        self.servers = []

    def __call__(self, *args, env=None, config=None, start=True, data_dir=None, port=None):
        workdir = self.tmp.mktemp("sessiond")
        args = list(args)
        env = dict(env or {})
        # The guessing throttle (--failed-validation-rate/-burst) counts every
        # failed validation from 127.0.0.1, and a test's own checks present
        # revoked and expired tokens by the hundred: whether they exceed the
        # default burst depends on the machine's speed. So test servers run
        # without it unless a test sets it (test_throttle.py does, with small
        # limits of its own); no test depends on a default its traffic exceeds.
        said = " ".join(map(str, args)) + " " + (config if isinstance(config, str) else " ".join(config or {}))
        if "failed-validation" not in said and not any("FAILED_VALIDATION" in k for k in env):
            env["SESSIOND_FAILED_VALIDATION_RATE"] = "0"
        if config is not None:
            args = ["--config", str(_write_config(workdir, config))] + args
        s = Server(workdir, args, env=env, data_dir=data_dir, port=port)
        self.servers.append(s)
        if start:
            s.start()
        return s

    def close_all(self):
        errors = []
        for s in self.servers:
            try:
                s.close()
            except (AssertionError, pytest.fail.Exception) as e:  # keep stopping the others
                errors.append(str(e))
            finally:
                s.kill9()
                if s.prism:
                    s.prism.stop()
                    errors.extend(f"Prism (port {s.prism.port}): {v}" for v in s.prism.response_violations())
        if errors:
            pytest.fail("server teardown problems:\n" + "\n---\n".join(errors))


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory: make_server('--idle-timeout', '2s', env={...}, config={...})."""
    f = ServerFactory(tmp_path_factory)
    yield f
    f.close_all()


@pytest.fixture
def server(make_server):
    """A fresh server with default options, for this test only."""
    return make_server()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """A default server shared by one module; tests keep to their own userIds."""
    f = ServerFactory(tmp_path_factory)
    s = f()
    yield s
    f.close_all()


@pytest.fixture
def api(module_server):
    return module_server.api


# --------------------------------------------------------------------------
# Raw socket HTTP
# --------------------------------------------------------------------------
class RawResponse:
    def __init__(self, status, reason, headers, body, raw):
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value)
        self.body = body
        self.raw = raw

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return jsonlib.loads(self.body)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.reason!r} body={self.body[:120]!r}>"


class _Incomplete(Exception):
    pass


def _parse_one(buf, eof):
    """Parse one response from buf. Returns (response, rest) or raises _Incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise _Incomplete
    head = buf[:end].decode("iso-8859-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers.append((k.strip(), v.strip()))
    hmap = {k.lower(): v for k, v in headers}
    pos = end + 4
    if 100 <= status < 200 or status in (204, 304):
        body = b""
    elif "chunked" in hmap.get("transfer-encoding", "").lower():
        body = b""
        while True:
            le = buf.find(b"\r\n", pos)
            if le < 0:
                raise _Incomplete
            size = int(buf[pos:le].split(b";")[0].strip(), 16)
            pos = le + 2
            if size == 0:
                te = buf.find(b"\r\n\r\n", pos - 2)
                if te < 0:
                    raise _Incomplete
                pos = te + 4
                break
            if len(buf) < pos + size + 2:
                raise _Incomplete
            body += buf[pos:pos + size]
            pos += size + 2
    elif "content-length" in hmap:
        n = int(hmap["content-length"])
        if len(buf) < pos + n:
            raise _Incomplete
        body = buf[pos:pos + n]
        pos += n
    else:
        if not eof:
            raise _Incomplete
        body = buf[pos:]
        pos = len(buf)
    return RawResponse(status, reason, headers, body, buf[:pos]), buf[pos:]


class RawConn:
    """A raw TCP connection for requests that requests/urllib3 would refuse to send."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.eof = False
        self.send_failed = False

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.send_failed = True

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        return chunk

    def read_response(self, timeout=10.0):
        """Next complete response, or None if the server closed/timeout first."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf:
                try:
                    resp, self.buf = _parse_one(self.buf, self.eof)
                    if 100 <= resp.status < 200:
                        continue
                    return resp
                except _Incomplete:
                    pass
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self._recv(left) is None:
                return None

    def wait_closed(self, timeout=5.0):
        """True if the server closes the connection within timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._recv(left) is None:
                return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_exchange(port, data, *, shutdown_write=False, timeout=10.0, max_responses=1, more_timeout=0.5):
    """Send raw bytes; return (responses, closed). Waits `timeout` for the first
    response and `more_timeout` for each further one."""
    c = RawConn(port, timeout=timeout)
    try:
        c.send(data)
        if shutdown_write:
            c.shutdown_write()
        out = []
        while len(out) < max_responses:
            r = c.read_response(timeout=timeout if not out else more_timeout)
            if r is None:
                break
            out.append(r)
        return out, c.eof
    finally:
        c.close()


def http_request_bytes(method, path, *, headers=None, body=None, version="HTTP/1.1", host=True):
    lines = [f"{method} {path} {version}"]
    if host:
        lines.append("Host: 127.0.0.1")
    for k, v in (headers or []):
        lines.append(f"{k}: {v}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return head + (body or b"")


def observe_raw(method, path, resp):
    observe_response(method, path, resp.status, resp.headers, resp.body, where=f"raw {method} {path[:60]}")


# --------------------------------------------------------------------------
# Database helpers (read-only)
# --------------------------------------------------------------------------
def audit_log_records(srv):
    """The records of srv's audit log (DATA-DIR/audit, the rotated files
    too), oldest first. The server may be writing it: a
    record is whole only once its newline is there, so a last line without
    one (a write in progress, or the torn record of a crash) is left out
    (parsing it failed test_audit by chance in CI)."""
    d = Path(srv.data_dir) / "audit"
    files = sorted(d.glob("audit-*.log")) + [d / "audit.log"]
    out = []
    for f in files:
        if f.exists():
            out += [jsonlib.loads(line) for line in f.read_bytes().split(b"\n")[:-1] if line]
    return out


def db_query(data_dir, sql, params=()):
    if PG_MODE:
        return pg().query(data_dir, sql, params)
    path = Path(data_dir) / "sessiond.db"
    assert path.exists(), f"{path} does not exist"
    uri = "file:" + quote(str(path)) + "?mode=ro"
    con = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def db_exec(data_dir, sql, params=()):
    """Changes the store behind a stopped server (tests of tampering). With the
    cache tier the cache is emptied too: it follows sessiond's own writes
    (a create fills it), never rows changed behind its back (docs/deployment.md)."""
    if PG_MODE:
        pg().query(data_dir, sql, params)
        if CACHE_MODE:
            redis().cmd("FLUSHALL")
        return
    con = sqlite3.connect(Path(data_dir) / "sessiond.db", timeout=10)
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def store_files(data_dir):
    """Where the store of data_dir keeps its bytes on disk: the data directory,
    or in PostgreSQL mode the whole private cluster (checkpointed first)."""
    if PG_MODE:
        pg().psql("CHECKPOINT")
        return [pg().data]
    return [Path(data_dir)]


def history_rows(data_dir, session_id):
    return db_query(data_dir, "SELECT id, user_id, ended_at, end_reason FROM session_history WHERE id = ?",
                    (session_id,))


def active_row_count(data_dir, session_id):
    return db_query(data_dir, "SELECT COUNT(*) FROM sessions WHERE id = ?", (session_id,))[0][0]


def creates_with_a_refused_user(srv, prefix):
    """48 creates from 16 threads at once, one in four for the user
    "refused" (which the calling test has made the store refuse): each
    refused one must answer 503, each other one 201 with a token that
    validates. Returns the users. Group commit puts several in a batch."""
    from concurrent.futures import ThreadPoolExecutor
    users = [new_user(prefix) if i % 4 else "refused" for i in range(48)]

    def create(u):
        r = srv.api.post("/sessions", json={"userId": u})
        if r.status_code == 201:
            record_token(r.json()["token"])
        return u, r.status_code, r.json()
    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(create, users))
    for u, code, body in results:
        if u == "refused":
            assert code == 503, body
        else:
            assert code == 201, body
            assert srv.api.validate(body["token"], touch=False)["isValid"] is True
    return users


def wait_for(pred, timeout=10.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")
        time.sleep(interval)


class ShiftedClock:
    """A wall clock a test moves forward instead of sleeping: `env` starts a
    server with the LD_PRELOAD shim tests/e2e/shim/clockshift.c, whose
    CLOCK_REALTIME is the real time plus `shift` seconds. Timeouts, expiry and
    the sweeper's decisions follow it; the monotonic clock (request timeouts,
    timer intervals) does not. `now()` is the server's wall clock as a
    datetime."""

    SHIM = Path(__file__).parent / "shim" / "clockshift.c"

    def __init__(self, tmp_path):
        self.so = Path(tmp_path) / "clockshift.so"
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(self.so), str(self.SHIM), "-ldl"],
                       check=True, stdin=subprocess.DEVNULL, timeout=60)
        self.file = Path(tmp_path) / "clock-shift"
        self.file.write_bytes(struct.pack("<q", 0))
        self.shift_ms = 0

    @property
    def env(self):
        return {"LD_PRELOAD": str(self.so), "SD_CLOCK_SHIFT_FILE": str(self.file),
                # the sanitizer runtime wants to be first; the shim only wraps the clock calls
                "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}

    def advance(self, seconds):
        self.shift_ms += int(round(seconds * 1000))
        fd = os.open(self.file, os.O_WRONLY)
        try:
            os.pwrite(fd, struct.pack("<q", self.shift_ms), 0)
        finally:
            os.close(fd)

    def now(self):
        return utcnow() + timedelta(milliseconds=self.shift_ms)


@pytest.fixture
def clock(tmp_path):
    return ShiftedClock(tmp_path)


def sleep_until(t_monotonic):
    d = t_monotonic - time.monotonic()
    if d > 0:
        time.sleep(d)


# --------------------------------------------------------------------------
# Token scan of files
# --------------------------------------------------------------------------
def token_needles(tokens):
    """Every encoding of each token that must never reach disk or logs."""
    needles = {}
    for t in tokens:
        raw = t.encode()
        dec = base64.urlsafe_b64decode(t + "=")
        forms = [
            (raw, "plaintext token"),
            (dec, "decoded token bytes"),
            (dec.hex().encode(), "hex of decoded token"),
            (dec.hex().upper().encode(), "HEX of decoded token"),
            (base64.b64encode(dec)[:43], "standard base64 of token"),
        ]
        for nd, label in forms:
            needles.setdefault(nd, (label, t))
    return needles


def needle_index(needles):
    index = {}
    for nd in needles:
        for off in range(8):
            index.setdefault(int.from_bytes(nd[off:off + 8], sys.byteorder), []).append(nd)
    return index


def scan_bytes(data, needles, index):
    """Return list of (label, token) found in data.

    Every needle is >= 15 bytes, so any occurrence covers one 8-byte word at an
    8-aligned offset of data, which equals the needle's 8 bytes at one of the
    offsets 0..7: intersect the file's aligned words with those, then confirm.
    """
    n = len(data) // 8 * 8
    hits = []
    if n:
        arr = array.array("Q")
        arr.frombytes(data[:n])
        cands = set(arr).intersection(index.keys())
        seen = set()
        for c in cands:
            for nd in index[c]:
                if nd not in seen and data.find(nd) >= 0:
                    seen.add(nd)
                    hits.append(needles[nd])
    return hits


def scan_paths_for_tokens(paths, tokens):
    needles = token_needles(tokens)
    index = needle_index(needles)
    findings = []
    scanned = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            try:
                data = f.read_bytes()
            except OSError:
                continue
            scanned.append(str(f))
            for label, tok in scan_bytes(data, needles, index):
                findings.append(f"{f}: {label} of token {tok[:6]}...")
    return findings, scanned


SCAN_SUMMARY = []


def pytest_terminal_summary(terminalreporter):
    for line in SCAN_SUMMARY:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def final_token_scan():
    yield
    for s in list(_LIVE_SERVERS):      # safety net; fixtures should have stopped them
        if s.proc is not None:
            s.kill9()
    for p in list(_LIVE_PRISMS):
        p.stop()
    if _PG:                            # its files are scanned too, then removed
        _PG[0].stop()
        ARTIFACT_DIRS.append(_PG[0].root)
    if _REDIS:
        _REDIS[0].stop()
        ARTIFACT_DIRS.append(Path(_REDIS[0].dir))
    try:
        _final_scan()
    finally:
        if _PG:
            _PG.pop().close()
        if _REDIS:
            _REDIS.pop().close()


def _final_scan():
    tokens = list(ISSUED_TOKENS)
    if not tokens:
        return
    findings, scanned = scan_paths_for_tokens(ARTIFACT_DIRS, tokens)
    SCAN_SUMMARY.append(f"final token scan: {len(tokens)} issued tokens x {len(scanned)} server log/data files: "
                        f"{len(findings)} hits")
    assert not findings, (f"issued tokens found in server logs / data files "
                          f"({len(findings)} hits, {len(scanned)} files scanned):\n" + "\n".join(findings[:30]))

"""Allocation failures, as SQLite tests them (issue 17 item 3;
src/util/allocfail.h): the sanitizer build routes every heap allocation of
sessiond's code, SQLite, jansson and OpenSSL through one counting hook that
makes the Nth one fail. These tests sweep N over the create, validate,
update, refresh and list paths and over start-up. What is proved for every
N: the request answers its success or 503 with a problem+json sentence
(never another status, never a dropped connection, never a crash); the
server keeps serving once the fault is gone; an acknowledged write is
readable, a refused one leaves no trace a client can see; when the server
stops, LeakSanitizer finds nothing (the suite runs with detect_leaks=1 and
every test's teardown asserts exit 0); the store passes PRAGMA
integrity_check and, after a restart, every acknowledged create validates.

The sweep is bounded: each path's allocations are counted first (the hook
counts while disarmed), then N runs over all of them up to FULL and over an
even stride beyond; every PERSIST-th N is also swept with "N+" (that one and
every allocation after it fails, until the test disarms). The release build
has no hook: these tests skip there.
"""
import hashlib
import os
import re
import secrets
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import (HTTP_TIMEOUT, PG_MODE, SESSIOND_BIN, child_env, db_query, free_port, new_user,
                      observe_response, problem_detail, record_token, wait_for)

pytestmark = pytest.mark.no_prism("allocation failures are injected into the server")

FULL = 160     # every N up to here ...
SPREAD = 40    # ... then this many more, evenly spread to the path's count
PERSIST = 10   # every PERSIST-th N also as "N+"
STARTUP_SPREAD = 400  # start-up makes thousands (SQLite's schema, OpenSSL): more points beyond FULL
ACK_DEADLINE = 30.0


class Faults:
    """The control file of one server (SESSIOND_ALLOC_FAULTS=control=PATH)."""

    def __init__(self, srv, path):
        self.srv, self.path = srv, Path(path)
        self.ack = Path(str(path) + ".ack")

    def phase(self, setting):
        """Arms `setting` (N, N+ or off); returns (allocations, failed) of
        the phase it ends."""
        if self.ack.exists():
            self.ack.unlink()
        self.path.write_text(setting)
        os.kill(self.srv.pid, signal.SIGUSR2)
        text = wait_for(lambda: self.ack.exists() and self.ack.read_text(), timeout=ACK_DEADLINE,
                        interval=0.001, what=f"{self.ack} after SIGUSR2")
        words = text.split()
        assert words[0] == "allocations" and words[2] == "failed", text
        return int(words[1]), int(words[3])


def points(k, spread=SPREAD):
    """The N to sweep for a path that makes k allocations."""
    if k <= FULL:
        return list(range(1, k + 1))
    step = (k - FULL) / spread
    return list(range(1, FULL + 1)) + sorted({FULL + round(step * (i + 1)) for i in range(spread)})


def fresh(srv, method, path, **kw):
    """One request on a new connection (its set-up allocates too), checked
    like every response of the suite."""
    headers = dict(kw.pop("headers", {}))
    headers["Connection"] = "close"
    r = requests.request(method, srv.direct_url + path, headers=headers, timeout=HTTP_TIMEOUT,
                         allow_redirects=False, **kw)
    observe_response(method, path, r.status_code, r.headers, r.content)
    return r


def faulty_server(make_server, tmp_path, *args, env=None):
    ctl = tmp_path / "alloc.ctl"
    srv = make_server("--sweep-interval", "1h", *args,
                      env={**(env or {}), "SESSIOND_ALLOC_FAULTS": f"control={ctl}"})
    if "injecting allocation failures" not in srv.log_text():
        pytest.skip("the release build has no allocation fault hook (the sanitizer build does)")
    return srv, Faults(srv, ctl)


def check_answer(r, ok, where):
    assert r.status_code in (ok, 503), f"{where}: {r.status_code}: {r.text[:300]}"
    if r.status_code == 503:
        assert problem_detail(r), f"{where}: a 503 without a sentence"


class Sweep:
    """Runs one path under every N, keeping the history the checks need."""

    def __init__(self, srv, faults):
        self.srv, self.faults = srv, faults
        self.acked = {}  # sessionId -> its current token, for every acknowledged create
        self.injected = 0

    def create(self, user, **fields):
        r = fresh(self.srv, "POST", "/sessions", json={"userId": user, **fields})
        if r.status_code == 201:
            s = r.json()
            self.acked[s["sessionId"]] = s["token"]
            return s
        return r

    def run(self, name, setup, request, check):
        """setup() -> state (disarmed); request(state) -> response (armed);
        check(state, response) (disarmed)."""
        for _ in range(2):  # the second time warm: first-use set-up is not the path
            st = setup()
            self.faults.phase("off")
            r = request(st)
            k, _ = self.faults.phase("off")
            check(st, r, f"{name} (counting its allocations)")
        assert k > 0, f"{name}: the path made no allocation the hook saw"
        ns = points(k)
        settings = [str(n) for n in ns] + [f"{n}+" for n in ns if n % PERSIST == 1]
        for setting in settings:
            st = setup()
            self.faults.phase(setting)
            try:
                r = request(st)
            finally:
                _, failed = self.faults.phase("off")
            self.injected += failed
            where = f"{name} with allocation {setting} failing"
            assert self.srv.running(), f"{where}: sessiond died:\n{self.srv.log_text()[-3000:]}"
            check(st, r, where)
        print(f"\n{name}: {k} allocations, {len(settings)} runs, {self.injected} failures injected")

    def finish(self):
        """Stops the server (LeakSanitizer runs at exit; 0 wanted), checks
        the file, restarts and validates every acknowledged create."""
        self.srv.stop()
        if not PG_MODE:
            assert db_query(self.srv.data_dir, "PRAGMA integrity_check") == [("ok",)]
        self.srv.start()
        for sid, token in self.acked.items():
            r = fresh(self.srv, "POST", "/sessions/validate",
                      headers={"Authorization": f"Bearer {token}"}, params={"touch": "false"})
            assert r.status_code == 200 and r.json()["isValid"], f"acknowledged {sid}: {r.text}"


def test_create_under_allocation_failures(make_server, tmp_path):
    srv, faults = faulty_server(make_server, tmp_path)
    sw = Sweep(srv, faults)

    def request(user):
        return sw.create(user, data={"role": "admin", "n": [1, 2]}, ipAddress="192.0.2.7",
                         userAgent="alloc/1.0", deviceInfo="laptop")

    def check(user, r, where):
        listed = fresh(srv, "GET", f"/users/{user}/sessions").json()["sessions"]
        if isinstance(r, dict):  # acknowledged: listed and valid at once
            assert [s["sessionId"] for s in listed] == [r["sessionId"]], where
            v = fresh(srv, "POST", "/sessions/validate", headers={"Authorization": f"Bearer {r['token']}"},
                      params={"touch": "false"})
            assert v.status_code == 200 and v.json()["isValid"], f"{where}: then {v.text}"
        else:
            check_answer(r, 201, where)
            # A create that committed before its reply failed is a session
            # nobody holds a token for: allowed, never more than one.
            assert len(listed) <= 1, f"{where}: {listed}"
        nxt = sw.create(user)
        assert isinstance(nxt, dict), f"{where}: the next create failed: {nxt.text[:300]}"

    sw.run("create", lambda: new_user("oom"), request, check)
    sw.finish()


def test_validate_under_allocation_failures(make_server, tmp_path, clock):
    """Each validation comes 10 minutes (on the shifted wall clock) after its
    session's creation, so it extends the expiry: the rolling touch is
    written behind the answer, and a failure there must not fail it."""
    srv, faults = faulty_server(make_server, tmp_path, env=clock.env)
    sw = Sweep(srv, faults)

    def setup():
        s = sw.create(new_user("oom"), ipAddress="192.0.2.7")
        clock.advance(600)
        return s

    def request(s):
        return fresh(srv, "POST", "/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"},
                     json={"ipAddress": "192.0.2.7", "userAgent": "alloc/1.0 (é)"})  # escaped: jansson reads it

    def check(s, r, where):
        check_answer(r, 200, where)
        if r.status_code == 200:
            assert r.json()["isValid"], f"{where}: {r.text}"
        again = fresh(srv, "POST", "/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"})
        assert again.status_code == 200 and again.json()["isValid"], f"{where}: then {again.text}"
        # Checked here: by the restart the shifted clock has run hours past
        # its idle timeout.
        sw.acked.pop(s["sessionId"])

    sw.run("validate", setup, request, check)
    sw.finish()


def test_update_under_allocation_failures(make_server, tmp_path):
    srv, faults = faulty_server(make_server, tmp_path)
    sw = Sweep(srv, faults)

    def setup():
        return sw.create(new_user("oom"), data={"v": 0})

    def request(s):
        return fresh(srv, "PUT", f"/sessions/{s['sessionId']}", headers={"If-Match": '"1"'},
                     json={"data": {"v": 1, "list": ["a", "b"]}, "ttlSeconds": 1800})

    def check(s, r, where):
        check_answer(r, 200, where)
        got = fresh(srv, "GET", f"/sessions/{s['sessionId']}").json()
        if r.status_code == 200:
            assert got["version"] == 2 and got["data"]["v"] == 1, f"{where}: {got}"
        else:  # refused: all of it or none of it
            assert (got["version"], got["data"]["v"]) in ((1, 0), (2, 1)), f"{where}: {got}"

    sw.run("update", setup, request, check)
    sw.finish()


def test_refresh_under_allocation_failures(make_server, tmp_path):
    # A retired token presented after the grace window revokes its session;
    # the check below presents one, so the window is made longer than any
    # machine could take to get there.
    srv, faults = faulty_server(make_server, tmp_path, "--refresh-grace", "1h")
    sw = Sweep(srv, faults)

    def setup():
        return sw.create(new_user("oom"))

    def request(s):
        return fresh(srv, "POST", f"/sessions/{s['sessionId']}/refresh",
                     headers={"Authorization": f"Bearer {s['token']}"})

    def check(s, r, where):
        check_answer(r, 200, where)
        if r.status_code == 200:
            new = r.json()["token"]
            record_token(new)
            sw.acked[s["sessionId"]] = new
        token = sw.acked[s["sessionId"]]
        v = fresh(srv, "POST", "/sessions/validate", headers={"Authorization": f"Bearer {token}"},
                  params={"touch": "false"})
        assert v.status_code == 200, f"{where}: then {v.text}"
        if r.status_code == 200 or v.json()["isValid"]:
            assert v.json()["isValid"], f"{where}: the token the client holds: {v.text}"
        else:
            # A 503 after the rotation committed (its reply had no memory):
            # as when a reply is lost on the network, the client holds the
            # retired token; the session itself lives on, rotated.
            got = fresh(srv, "GET", f"/sessions/{s['sessionId']}")
            assert got.status_code == 200 and got.json()["version"] > s["version"], f"{where}: {got.text}"
            sw.acked.pop(s["sessionId"])

    sw.run("refresh", setup, request, check)
    sw.finish()


def test_list_under_allocation_failures(make_server, tmp_path):
    srv, faults = faulty_server(make_server, tmp_path)
    sw = Sweep(srv, faults)
    user = new_user("oom")
    for i in range(3):
        sw.create(user, data={"i": i})

    def request(_):
        return fresh(srv, "GET", f"/users/{user}/sessions", params={"limit": "2"})

    def check(_, r, where):
        check_answer(r, 200, where)
        if r.status_code == 200:
            assert len(r.json()["sessions"]) == 2, f"{where}: {r.text[:300]}"

    sw.run("list", lambda: None, request, check)
    sw.finish()


# ---- start-up -----------------------------------------------------------

def start_with(tmp_path, spec, data_dir, port, name, args=()):
    """Starts sessiond with SESSIOND_ALLOC_FAULTS=spec (and args); returns (process,
    stderr path) once it answers /healthz or has exited."""
    err = tmp_path / f"stderr.{name}.log"
    with open(err, "wb") as errf:
        proc = subprocess.Popen([SESSIOND_BIN, "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
                                 "--sweep-interval", "1h", *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=errf,
                                env=child_env({"SESSIOND_ALLOC_FAULTS": spec,
                                               "SESSIOND_FAILED_VALIDATION_RATE": "0"}))

    def up_or_gone():  # up: answering HTTP at all (with "N+" past start-up, a 503)
        if proc.poll() is not None:
            return True
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=HTTP_TIMEOUT).status_code in (200, 503)
        except requests.RequestException:
            return False
    try:
        wait_for(up_or_gone, timeout=60, interval=0.01, what=f"start-up with {spec}")
    except AssertionError:
        proc.kill()
        proc.wait()
        raise
    return proc, err


@pytest.mark.sqlite_only("start-up is swept on the embedded store, whose opening allocates the most")
def test_start_up_under_allocation_failures(tmp_path):
    """sessiond starts with the Nth allocation failing (counted from the
    hook's installation, first thing in main): it either starts and then
    stops cleanly (exit 0), or exits 1 or 2 with a sentence saying why;
    never a crash, a sanitizer report or a leak; the store passes its
    integrity check at the end."""
    if not os.path.exists(SESSIOND_BIN):
        pytest.fail(f"sessiond binary not found at {SESSIOND_BIN}")
    data = tmp_path / "data"
    port = free_port()
    ctl = tmp_path / "count.ctl"
    # Every key file it can read, so that their loading is swept too.
    (tmp_path / "api-keys").write_text(f"k1 {hashlib.sha256(b'alloc-test-key').hexdigest()} sessions\n")
    (tmp_path / "enc-keys").write_text(f"e1 {secrets.token_hex(32)}\n")
    jwk = subprocess.run([SESSIOND_BIN, "jwk", "generate"], capture_output=True, text=True, timeout=60,
                         check=True, stdin=subprocess.DEVNULL, env=child_env()).stdout
    (tmp_path / "jwt-keys").write_text(jwk)
    for f in ("api-keys", "enc-keys", "jwt-keys"):
        os.chmod(tmp_path / f, 0o600)
    args = ["--api-keys", tmp_path / "api-keys", "--encryption-keys", tmp_path / "enc-keys",
            "--jwt-keys", tmp_path / "jwt-keys", "--jwt-audience", "alloc-test"]
    proc, err = start_with(tmp_path, f"control={ctl}", data, port, "count", args)
    if "injecting allocation failures" not in err.read_text(errors="replace"):
        proc.terminate()
        proc.wait()
        pytest.skip("the release build has no allocation fault hook (the sanitizer build does)")
    assert proc.poll() is None, err.read_text(errors="replace")

    class P:
        pid = proc.pid
    k, _ = Faults(P, ctl).phase("off")  # what start-up allocated, until it answered
    proc.terminate()
    assert proc.wait(timeout=60) == 0, err.read_text(errors="replace")
    ns = points(k, STARTUP_SPREAD)
    runs = refused = 0
    for setting in [str(n) for n in ns] + [f"{n}+" for n in ns if n % PERSIST == 1]:
        proc, err = start_with(tmp_path, f"at={setting}", data, port, setting, args)
        if proc.poll() is None:  # it started: it must also stop cleanly
            proc.terminate()
            rc = proc.wait(timeout=60)
        else:
            rc = proc.returncode
            refused += 1
        log = err.read_text(errors="replace")
        where = f"start-up with allocation {setting} failing (exit {rc})"
        assert "Sanitizer" not in log and "runtime error" not in log, f"{where}:\n{log[-4000:]}"
        assert rc in (0, 1, 2), f"{where}:\n{log[-4000:]}"
        if rc:
            assert " error " in log or "sessiond: " in log, f"{where}: no sentence says why:\n{log[-3000:]}"
            assert not re.search(r": *$", log, re.M), f"{where}: a sentence that says nothing:\n{log[-3000:]}"
        runs += 1
        err.unlink()
    assert db_query(data, "PRAGMA integrity_check") == [("ok",)]
    print(f"\nstart-up: {k} allocations, {runs} runs, {refused} refused to start")

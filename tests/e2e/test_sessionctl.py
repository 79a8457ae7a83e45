"""sessionctl, the operator CLI (built on libsessiond-client), against the
real daemon: every command, table and --json output, exit codes (not found,
refused key, server down, invalid token, usage), validate reading the token
from stdin, bulk revocation from a file, and following the audit trail.

The binary is $SESSIONCTL_BIN, else the sessionctl beside $SESSIOND_BIN (so
the ASan run of make test drives build/asan/sessionctl), else build/sessionctl.
"""
import hashlib
import json
import os
import secrets
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import REPO, SESSIOND_BIN, child_env, free_port, new_user, wait_for

_beside = Path(SESSIOND_BIN).parent / "sessionctl"
SESSIONCTL = os.environ.get("SESSIONCTL_BIN") or str(_beside if _beside.exists() else REPO / "build" / "sessionctl")

OK, FAIL, USAGE, NOTFOUND, AUTH, UNAVAILABLE, INVALID = 0, 1, 2, 3, 4, 5, 6


def ctl(url, *args, stdin=None, env=None, expect=OK):
    e = child_env({"SESSIOND_URL": url, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", **(env or {})})
    p = subprocess.run([SESSIONCTL, *map(str, args)], input=stdin, capture_output=True, text=True, env=e,
                       timeout=60)
    assert "Sanitizer" not in p.stderr, p.stderr
    if expect is not None:
        assert p.returncode == expect, f"sessionctl {args}: exit {p.returncode}, want {expect}\n" \
                                       f"stdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def rows(out):
    """Table rows (header first), split on runs of 2+ spaces."""
    import re
    return [re.split(r" {2,}", ln.strip()) for ln in out.splitlines() if ln.strip()]


def test_list_table_json_and_limit(module_server):
    a, url = module_server.api, module_server.url
    user = new_user("ctl")
    ids = [a.create(user, deviceInfo=f"dev {i}", ipAddress="203.0.113.7")["sessionId"] for i in range(3)]
    t = rows(ctl(url, "list", user).stdout)
    assert t[0][:3] == ["SESSION ID", "DEVICE", "IP ADDRESS"], t
    assert sorted(r[0] for r in t[1:]) == sorted(ids)
    assert {r[1] for r in t[1:]} == {"dev 0", "dev 1", "dev 2"}
    assert all(r[2] == "203.0.113.7" for r in t[1:])
    j = json.loads(ctl(url, "list", user, "--json").stdout)
    assert j["userId"] == user and sorted(s["sessionId"] for s in j["sessions"]) == sorted(ids)
    assert all("token" not in s for s in j["sessions"])
    assert len(json.loads(ctl(url, "--json", "list", "--limit", "2", user).stdout)["sessions"]) == 2
    assert "no active sessions" in ctl(url, "list", new_user("nobody")).stdout


def test_show_and_not_found(module_server):
    a, url = module_server.api, module_server.url
    s = a.create(new_user("ctl"), deviceInfo="laptop\x1b[2J", data={"plan": "pro"})
    out = ctl(url, "show", s["sessionId"]).stdout
    fields = dict(r for r in rows(out)[1:])
    assert fields["sessionId"] == s["sessionId"] and fields["userId"] == s["userId"]
    assert fields["deviceInfo"] == "laptop?[2J", "control bytes from the server must not reach the terminal"
    assert json.loads(fields["data"]) == {"plan": "pro"} and fields["version"] == "1"
    j = json.loads(ctl(url, "show", s["sessionId"], "--json").stdout)
    assert j["sessionId"] == s["sessionId"] and j["data"] == {"plan": "pro"} and "token" not in j
    p = ctl(url, "show", "A" * 22, expect=NOTFOUND)
    assert "not found" in p.stderr and "no active session" in p.stderr, p.stderr


def test_revoke_and_revoke_user_except(module_server):
    a, url = module_server.api, module_server.url
    s = a.create(new_user("ctl"))
    assert "revoked " + s["sessionId"] in ctl(url, "revoke", s["sessionId"]).stdout
    assert a.validate(s["token"])["isValid"] is False
    ctl(url, "revoke", s["sessionId"], expect=NOTFOUND)

    # --if-version: only while the session is at that version (If-Match).
    s = a.create(new_user("ctl"))
    p = ctl(url, "revoke", s["sessionId"], "--if-version", "2", expect=FAIL)
    assert "412" in p.stderr, p.stderr
    assert a.validate(s["token"], touch=False)["isValid"] is True
    ctl(url, "revoke", s["sessionId"], "--if-version", "0", expect=USAGE)
    assert "revoked " + s["sessionId"] in ctl(url, "revoke", s["sessionId"], "--if-version", "1").stdout
    assert a.validate(s["token"])["isValid"] is False

    user = new_user("ctl")
    keep, *others = [a.create(user) for _ in range(3)]
    out = ctl(url, "revoke-user", user, "--except", keep["sessionId"]).stdout
    assert "revoked 2 sessions of user " + user in out, out
    assert a.validate(keep["token"])["isValid"] is True
    assert all(a.validate(o["token"])["isValid"] is False for o in others)
    assert json.loads(ctl(url, "--json", "revoke-user", user).stdout) == {"userId": user, "deleted": 1}
    p = ctl(url, "revoke-user", user, "--except", "not-an-id", expect=FAIL)
    assert "except" in p.stderr


def test_bulk_revoke_from_file_and_stdin(module_server, tmp_path):
    a, url = module_server.api, module_server.url
    sessions = [a.create(new_user("bulk")) for _ in range(4)]
    ended = a.create(new_user("bulk"))
    a.delete(f"/sessions/{ended['sessionId']}", expect=204)
    f = tmp_path / "ids"
    f.write_text("# compromised\n" + "\n".join(s["sessionId"] for s in sessions[:3]) + "\n\n"
                 + sessions[0]["sessionId"] + "\n  " + ended["sessionId"] + "  \n" + "Z" * 22 + "\n")
    j = json.loads(ctl(url, "bulk-revoke", f, "--json").stdout)
    assert j == {"ids": 6, "unique": 5, "revoked": 3, "notActive": 2}, j
    assert [a.validate(s["token"])["isValid"] for s in sessions] == [False, False, False, True]

    # A malformed line: reported, and nothing revoked.
    f.write_text(sessions[3]["sessionId"] + "\nnot a session id\n")
    p = ctl(url, "bulk-revoke", f, expect=FAIL)
    assert ":2: not a session id" in p.stderr and "nothing revoked" in p.stderr, p.stderr
    assert a.validate(sessions[3]["token"])["isValid"] is True

    out = ctl(url, "bulk-revoke", "-", stdin=sessions[3]["sessionId"] + "\n").stdout
    assert "1 ids (1 unique): 1 revoked, 0 not active" in out, out
    assert a.validate(sessions[3]["token"])["isValid"] is False
    ctl(url, "bulk-revoke", tmp_path / "missing", expect=FAIL)

    # More than one request's worth (the server takes 1000 ids a request).
    many = [a.create(new_user("bulk"))["sessionId"] for _ in range(3)]
    fake = [secrets.token_urlsafe(16)[:22] for _ in range(1200)]
    f.write_text("\n".join(fake + many) + "\n")
    j = json.loads(ctl(url, "--json", "bulk-revoke", f).stdout)
    assert j["revoked"] == 3 and j["unique"] == len(set(fake + many)), j


def test_validate_reads_the_token_from_stdin_or_a_file(module_server, tmp_path):
    a, url = module_server.api, module_server.url
    s = a.create(new_user("ctl"))
    p = ctl(url, "validate", stdin=s["token"] + "\n")
    t = rows(p.stdout)
    assert t[0] == ["VALID", "SESSION ID", "USER", "EXPIRES"] and t[1][:3] == ["yes", s["sessionId"], s["userId"]]
    assert s["token"] not in p.stdout + p.stderr
    j = json.loads(ctl(url, "validate", "--json", "--no-touch", stdin=s["token"]).stdout)
    assert j["isValid"] is True and j["sessionId"] == s["sessionId"] and j["userId"] == s["userId"]
    tf = tmp_path / "token"
    tf.write_text(s["token"] + "\n")
    ctl(url, "validate", "--token-file", tf)
    assert json.loads(ctl(url, "validate", "--json", stdin="x" * 43, expect=INVALID).stdout) == \
        {"isValid": False, "expiry": None}
    ctl(url, "validate", "--session", s["sessionId"])
    # The token is never taken from argv (ps shows it to every user).
    p = ctl(url, "validate", s["token"], expect=USAGE)
    assert "never from the command line" in p.stderr
    ctl(url, "validate", stdin="", expect=FAIL)
    a.delete(f"/sessions/{s['sessionId']}", expect=204)
    assert "invalid" in ctl(url, "validate", stdin=s["token"], expect=INVALID).stdout
    ctl(url, "validate", "--session", s["sessionId"], expect=INVALID)


def test_validate_a_bound_session_with_its_context(module_server):
    a, url = module_server.api, module_server.url
    s = a.create(new_user("bound"), ipAddress="203.0.113.7", userAgent="Firefox/1", bind={"ip": True, "userAgent": True})
    p = ctl(url, "validate", "--no-touch", stdin=s["token"], expect=INVALID)
    assert "invalid: binding_mismatch" in p.stdout, p.stdout
    j = json.loads(ctl(url, "--json", "validate", "--ip", "198.51.100.1", "--user-agent", "Firefox/1",
                       stdin=s["token"], expect=INVALID).stdout)
    assert j == {"isValid": False, "expiry": None, "reason": "binding_mismatch"}, j
    ok = ctl(url, "validate", "--ip", "203.0.113.7", "--user-agent", "Firefox/1", stdin=s["token"]).stdout
    assert rows(ok)[1][:2] == ["yes", s["sessionId"]]
    ctl(url, "validate", "--session", s["sessionId"], "--ip", "203.0.113.7", expect=USAGE)


def test_stats(module_server):
    a, url = module_server.api, module_server.url
    a.create(new_user("stats"))
    out = ctl(url, "stats").stdout
    fig = dict(r for r in rows(out)[1:] if len(r) == 2)
    assert fig["ready"] == "yes" and int(fig["active sessions"]) >= 1 and int(fig["requests"]) >= 1, out
    j = json.loads(ctl(url, "stats", "--json").stdout)
    active = int(a.get("/metrics").text.split("\nsessiond_sessions_active ")[1].split()[0])
    assert j["ready"] is True and j["sessionsActive"] == active and j["requests"] >= j["requests2xx"] >= 1, j


def _events(url, *args, **kw):
    return [json.loads(ln) for ln in ctl(url, "events", "--json", *args, **kw).stdout.splitlines()]


def test_events_session_user_and_follow(module_server):
    a, url = module_server.api, module_server.url
    user = new_user("ev")
    s = a.create(user)
    a.put(f"/sessions/{s['sessionId']}", json={"data": {"a": 1}}, expect=200)
    a.delete(f"/sessions/{s['sessionId']}", expect=204)
    ev = _events(url, "--session", s["sessionId"])
    assert [e["event"] for e in ev] == ["created", "updated", "revoked"] and ev[-1]["reason"] == "revoked", ev
    table = rows(ctl(url, "events", "--user", user).stdout)
    assert table[0][:3] == ["SEQ", "TIME", "EVENT"] and [r[2] for r in table[1:]] == ["created", "updated", "revoked"]
    assert _events(url, "--user", new_user("nobody")) == []
    ctl(url, "events", "--session", "B" * 22, expect=NOTFOUND)
    ctl(url, "events", "--session", s["sessionId"], "--user", user, expect=USAGE)
    ctl(url, "events", expect=USAGE)

    # Pages: more events than one request returns (100), in order, none twice.
    user2 = new_user("ev")
    ids = [a.create(user2)["sessionId"] for _ in range(60)]
    a.delete(f"/users/{user2}/sessions", expect=200)
    ev = _events(url, "--user", user2)
    assert len(ev) == 120 and [e["seq"] for e in ev] == sorted({e["seq"] for e in ev})
    assert len(_events(url, "--user", user2, "--limit", "7")) == 7
    # --newest: the latest first, over more than one page (limit 150 > 100).
    newest = _events(url, "--user", user2, "--newest", "--limit", "150")
    assert newest == list(reversed(ev)), "--newest is not the events newest first"
    assert _events(url, "--user", user2, "--newest", "--limit", "3") == list(reversed(ev))[:3]
    assert [e["event"] for e in _events(url, "--session", s["sessionId"], "--newest")] == \
        ["revoked", "updated", "created"]
    ctl(url, "events", "--user", user2, "--newest", "--follow", expect=USAGE)

    # --follow prints what happens after it started, then stops on SIGTERM.
    user3 = new_user("ev")
    first = a.create(user3)
    e = child_env({"SESSIOND_URL": url, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"})
    p = subprocess.Popen([SESSIONCTL, "events", "--user", user3, "--follow", "--interval", "100ms", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(json.loads(ln) for ln in p.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(seen) >= 1, timeout=30, what="the first event")
        second = a.create(user3)
        a.delete(f"/users/{user3}/sessions", expect=200)
        wait_for(lambda: len(seen) >= 4, timeout=30, what="followed events")
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
    reader.join(timeout=10)
    err = p.stderr.read()
    assert rc == 0 and "Sanitizer" not in err, err
    assert [x["event"] for x in seen] == ["created", "created", "revoked", "revoked"], seen
    assert {x["sessionId"] for x in seen} == {first["sessionId"], second["sessionId"]}
    assert [x["seq"] for x in seen] == sorted(x["seq"] for x in seen)


def _key_file(tmp_path, **keys):
    p = tmp_path / "keys"
    p.write_text("".join(f"{i} {hashlib.sha256(k.encode()).hexdigest()} {s}\n" for i, (k, s) in keys.items()))
    return p


def test_api_keys_and_exit_codes(make_server, tmp_path):
    app, ops = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    srv = make_server("--api-keys", str(_key_file(tmp_path, app=(app, "sessions,validate"), ops=(ops, "admin"))))
    user = new_user("keys")
    s = srv.api.post("/sessions", json={"userId": user}, headers={"X-Api-Key": app}, expect=201).json()
    url = srv.url
    p = ctl(url, "list", user, expect=AUTH)
    assert "401" in p.stderr
    bad = tmp_path / "bad"
    bad.write_text("not-the-key\n")
    ctl(url, "--api-key-file", bad, "list", user, expect=AUTH)
    good = tmp_path / "app"
    good.write_text(app + "\n")
    assert s["sessionId"] in ctl(url, "--api-key-file", good, "list", user).stdout
    assert s["sessionId"] in ctl(url, "list", user, env={"SESSIOND_API_KEY": app}).stdout
    # The app key lacks the admin scope: 403 is exit 4 as well.
    p = ctl(url, "events", "--user", user, env={"SESSIOND_API_KEY": app}, expect=AUTH)
    assert "403" in p.stderr
    ev = _events(url, "--user", user, env={"SESSIOND_API_KEY": ops})
    assert [e["event"] for e in ev] == ["created"] and ev[0]["actor"] == "app"
    ctl(url, "revoke-user", user, env={"SESSIOND_API_KEY": ops})
    ev = _events(url, "--session", s["sessionId"], env={"SESSIOND_API_KEY": ops})
    assert ev[-1]["event"] == "revoked" and ev[-1]["reason"] == "user_revoked" and ev[-1]["actor"] == "ops"
    for out in (p.stdout, p.stderr):
        assert app not in out and ops not in out


def test_server_down_and_usage_errors(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    p = ctl(down, "stats", expect=UNAVAILABLE)
    assert "cannot connect" in p.stderr
    ctl(down, "list", "alice", expect=UNAVAILABLE)
    ctl(down, "validate", stdin="x" * 43, expect=UNAVAILABLE)
    ctl(down, expect=USAGE)
    ctl(down, "frobnicate", expect=USAGE)
    ctl(down, "list", expect=USAGE)
    ctl(down, "list", "alice", "--except", "x", expect=USAGE)
    ctl(down, "--timeout", "soon", "stats", expect=USAGE)
    ctl(down, "--url", "ftp://example.org", "stats", expect=USAGE)
    assert "Exit codes" in ctl(down, "--help").stdout
    assert ctl(down, "--version").stdout.startswith("sessionctl ")


def test_timeout_is_exit_5(make_server):
    """A server that accepts but does not answer (stopped): --timeout ends the
    wait, exit 5; once it runs again, the same command succeeds."""
    srv = make_server()
    url = srv.url
    srv.proc.send_signal(signal.SIGSTOP)
    try:
        ctl(url, "--timeout", "300ms", "stats", expect=UNAVAILABLE)
    finally:
        srv.proc.send_signal(signal.SIGCONT)
    ctl(url, "stats")


def test_ids_that_begin_with_a_dash_are_operands(module_server):
    """A session id is 22 base64url characters and may begin with '-' (one
    in 64) or even "--": sessionctl must not read it as an option."""
    url = module_server.url
    for sid in ("-" + "A" * 21, "--" + "B" * 20, "-x" + "_" * 20):
        p = ctl(url, "show", sid, expect=NOTFOUND)
        assert "no active session" in p.stderr, p.stderr
        p = ctl(url, "show", sid, "--json", expect=NOTFOUND)
        assert "no active session" in p.stderr, p.stderr
        p = ctl(url, "revoke-user", new_user("ctl"), "--except", sid)
        assert "revoked 0 sessions" in p.stdout, p.stdout


@pytest.mark.no_prism("faults are injected into the server, not the contract")
def test_retry_reads_after_503(make_server):
    srv = make_server(env={"SESSIOND_STORE_FAULTS": "get_by_token=fail*2,end=fail*1"})
    if "injecting faults" not in srv.log_text():
        pytest.skip("the release build has no store fault hook (the sanitizer build does)")
    s = srv.api.create(new_user("ctl-retry"))
    # Without --retry the first 503 is the answer (exit 5).
    p = ctl(srv.url, "validate", "--no-touch", stdin=s["token"], expect=UNAVAILABLE)
    assert "503" in p.stderr, p.stderr
    # With it, the second try (after the Retry-After of 1 s) is served.
    ctl(srv.url, "--retry", "3", "validate", "--no-touch", stdin=s["token"])
    # A revocation is sent once: its 503 stands, and the session is still there.
    ctl(srv.url, "--retry", "3", "revoke", s["sessionId"], expect=UNAVAILABLE)
    assert srv.api.validate(s["token"], touch=False)["isValid"] is True
    ctl(srv.url, "--retry", "0", "list", "u", expect=USAGE)
    ctl(srv.url, "--retry", "11", "list", "u", expect=USAGE)


def test_incident_commands(make_server):
    srv = make_server()
    a, url = srv.api, srv.url
    old = a.create(new_user("ctl-inc"), ipAddress="203.0.113.7", deviceId="stolen-1")
    other = a.create(new_user("ctl-inc"), ipAddress="198.51.100.9", deviceId="desk-2")
    assert ctl(url, "not-before").stdout.strip() == "not-before: none"
    assert json.loads(ctl(url, "--json", "not-before").stdout) == {"notBefore": None}
    # A revocation of many asks for --yes; without it nothing happens.
    p = ctl(url, "revoke-matching", "--network", "203.0.113.0/24", expect=USAGE)
    assert "--yes" in p.stderr
    p = ctl(url, "revoke-matching", "--network", "203.0.113.0/24", "--dry-run")
    assert p.stdout.strip() == "would revoke 1 session from network 203.0.113.0/24", p.stdout
    assert a.validate(old["token"], touch=False)["isValid"] is True
    j = json.loads(ctl(url, "--json", "revoke-matching", "--device", "stolen-1", "--yes").stdout)
    assert j == {"deviceId": "stolen-1", "revoked": 1}, j
    assert a.validate(old["token"], touch=False)["isValid"] is False
    assert a.validate(other["token"], touch=False)["isValid"] is True
    ctl(url, "revoke-matching", "--network", "203.0.113.7/24", "--yes", expect=FAIL)  # host bits set: 400
    ctl(url, "revoke-matching", "--yes", expect=USAGE)
    ctl(url, "revoke-matching", "--network", "10.0.0.0/8", "--device", "x", "--yes", expect=USAGE)
    # The global not-before: asked for --yes, then every older session stops.
    ctl(url, "not-before", "now", expect=USAGE)
    p = ctl(url, "not-before", "now", "--yes")
    assert p.stdout.startswith("not-before: 20") and "(1 active session invalidated)" in p.stdout, p.stdout
    assert a.validate(other["token"], touch=False)["isValid"] is False
    shown = ctl(url, "not-before").stdout.strip()
    assert shown == p.stdout.split(" (")[0], (shown, p.stdout)
    newer = a.create(new_user("ctl-inc"))
    assert a.validate(newer["token"], touch=False)["isValid"] is True
    ctl(url, "not-before", "yesterday", "--yes", expect=FAIL)  # not RFC 3339: 400
    ctl(url, "list", "u", "--yes", expect=USAGE)

"""Event webhooks (issue 19 item 5, docs/webhooks.md): every audit event the
store commits is POSTed to each --webhook URL, signed the Standard Webhooks
way, at least once, in order, with retries; nothing is lost across kill -9.

The receiver is a real HTTP server started here on 127.0.0.1 (http.server
in a thread). It checks every signature itself, from the spec
(https://www.standardwebhooks.com/): HMAC-SHA256 keyed with the base64
bytes after "whsec_", over "<webhook-id>.<webhook-timestamp>.<body>",
base64, in a space-separated list of "v1,<sig>" entries. What the server
delivered is compared with what the store says happened (the events API),
never with a count of what the test did. Every wait polls with a generous
deadline; no test depends on how fast anything runs.
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import (CACHE_MODE, PG_MODE, REPO, SESSIOND_BIN, child_env, free_port, new_user, pg, redis,
                      wait_for)

pytestmark = pytest.mark.no_prism("webhook deliveries do not go through the API")

DEADLINE = 120  # seconds; only ever waited out when something is wrong (a lease is 30 s)


def make_secret(tmp_path, name="secret"):
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    path = tmp_path / name
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret, path


def signature_ok(secret, msg_id, timestamp, body, header):
    """The Standard Webhooks check, written from the spec."""
    key = base64.b64decode(secret[len("whsec_"):])
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in header.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


class Receiver:
    """A webhook endpoint on loopback. Records every request (before it
    answers); answers 204, or 500 while `fail` says so; can hold one request
    unanswered (`hold_nth`) until `release` is set."""

    def __init__(self, secret):
        self.secret = secret
        self.got = []                # every request, in arrival order
        self.bad = []                # requests whose signature or shape was wrong
        self.cond = threading.Condition()
        self.fail_next = 0           # answer 500 to this many requests
        self.fail_ids = {}           # webhook-id -> how many more 500s
        self.fail_users = set()      # events of these userIds are always refused
        self.hold_nth = None         # the nth request (1-based) waits for release
        self.release = threading.Event()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                r = {"id": self.headers.get("webhook-id", ""),
                     "ts": self.headers.get("webhook-timestamp", ""),
                     "sig": self.headers.get("webhook-signature", ""),
                     "type": self.headers.get("Content-Type", ""), "path": self.path, "body": body}
                status = 204
                with rec.cond:
                    rec.check(r)
                    rec.got.append(r)
                    n = len(rec.got)
                    if r.get("json", {}).get("data", {}).get("userId") in rec.fail_users:
                        status = 500
                    elif rec.fail_ids.get(r["id"], 0) > 0:
                        rec.fail_ids[r["id"]] -= 1
                        status = 500
                    elif rec.fail_next > 0:
                        rec.fail_next -= 1
                        status = 500
                    r["status"] = status
                    rec.cond.notify_all()
                if n == rec.hold_nth:
                    rec.release.wait(DEADLINE * 2)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (killed)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="receiver", daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/sessiond"

    def check(self, r):
        """Signature (from the spec), freshness, id and body shape."""
        problems = []
        if not r["ts"].isdigit() or abs(int(r["ts"]) - time.time()) > 300:
            problems.append("timestamp missing or not within the convention's 5 minutes")
        elif not signature_ok(self.secret, r["id"], r["ts"], r["body"], r["sig"]):
            problems.append("signature does not verify")
        try:
            doc = json.loads(r["body"])
            r["json"] = doc
            if r["id"] != f"evt_{doc['data']['seq']}" or doc["type"] != doc["data"]["event"]:
                problems.append("webhook-id or type does not match the body")
        except (ValueError, KeyError, TypeError):
            problems.append("body is not the documented JSON")
        if not r["type"].startswith("application/json"):
            problems.append("Content-Type is not application/json")
        if problems:
            self.bad.append((r, problems))

    def seqs(self):
        """The events the receiver accepted (answered 2xx), in order."""
        with self.cond:
            return [r["json"]["data"]["seq"] for r in self.got if "json" in r and r["status"] < 300]

    def wait_for_seqs(self, want, what="every event"):
        want = set(want)
        wait_for(lambda: want <= set(self.seqs()), timeout=DEADLINE, interval=0.05, what=what)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver(tmp_path):
    secret, path = make_secret(tmp_path)
    r = Receiver(secret)
    r.secret_path = path
    yield r
    r.close()
    assert not r.bad, f"badly signed or shaped deliveries: {r.bad[:3]}"


def hook_args(receiver, *more):
    return ["--webhook", f"{receiver.url} {receiver.secret_path}", *more]


def store_events(srv, users):
    """The store's own account of what happened: (seq, event, sessionId)
    of every event of these users, oldest first."""
    out = []
    for u in users:
        for e in srv.api.get(f"/users/{u}/events", params={"limit": 1000}, expect=200).json()["events"]:
            out.append((e["seq"], e["event"], e.get("sessionId")))
    return sorted(out)


def per_session(deliveries):
    """sessionId -> the seqs delivered for it, in arrival order, each first
    arrival only (a redelivery is allowed, at least once)."""
    seen, out = set(), {}
    for r in deliveries:
        d = r["json"]["data"]
        if d["seq"] in seen:
            continue
        seen.add(d["seq"])
        out.setdefault(d.get("sessionId"), []).append(d["seq"])
    return out


def lifecycle(srv, users):
    """Creates, updates, refreshes, revokes: several sessions of several
    users, interleaved, so order per session is worth checking."""
    made = []
    for u in users:
        for _ in range(3):
            made.append(srv.api.create(u, userAgent="webhook-test"))
    for s in made[::2]:
        srv.api.put(f"/sessions/{s['sessionId']}", json={"data": {"k": 1}}, headers={"If-Match": '"1"'},
                    expect=200)
    srv.api.post(f"/sessions/{made[1]['sessionId']}/refresh",
                 headers={"Authorization": f"Bearer {made[1]['token']}"}, expect=200)
    srv.api.delete(f"/sessions/{made[0]['sessionId']}", expect=204)
    srv.api.delete(f"/users/{users[-1]}/sessions", expect=200)
    return made


def metric(srv, name):
    text = srv.api.get("/metrics", expect=200).text
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_every_event_arrives_signed_and_in_order_per_session(make_server, receiver):
    srv = make_server(*hook_args(receiver))
    users = [new_user("wh") for _ in range(3)]
    lifecycle(srv, users)
    want = store_events(srv, users)
    assert {e for _, e, _ in want} >= {"created", "updated", "refreshed", "revoked"}, want
    receiver.wait_for_seqs(s for s, _, _ in want)

    got = [r for r in receiver.got if r["json"]["data"]["seq"] in {s for s, _, _ in want}]
    for r in got:
        d = r["json"]["data"]
        assert r["path"] == "/hooks/sessiond"
        assert (d["seq"], d["event"], d.get("sessionId")) in want
        assert d["userId"] in users
    # In order per session: the store's order of each session's events.
    by_store = {}
    for seq, _, sid in want:
        by_store.setdefault(sid, []).append(seq)
    assert per_session(got) == by_store
    assert metric(srv, "sessiond_webhook_delivered_total") >= len(want)
    assert metric(srv, "sessiond_webhook_dead_letter_total") == 0
    wait_for(lambda: metric(srv, "sessiond_webhook_lag_seconds") == 0, timeout=DEADLINE,
             what="the lag back to 0 once caught up")
    # The secret is never logged, nor sent anywhere but as a MAC; the URL's
    # path is not logged either (some services keep a secret there).
    assert receiver.secret not in srv.log_text() and "/hooks/sessiond" not in srv.log_text()
    assert all(receiver.secret.encode() not in r["body"] for r in receiver.got)


def test_the_event_list_filters(make_server, receiver):
    srv = make_server("--webhook", f"{receiver.url} {receiver.secret_path} revoked")
    u = new_user("whf")
    a, b = srv.api.create(u), srv.api.create(u)
    srv.api.delete(f"/sessions/{a['sessionId']}", expect=204)
    srv.api.delete(f"/sessions/{b['sessionId']}", expect=204)
    want = [s for s, e, _ in store_events(srv, [u]) if e == "revoked"]
    assert len(want) == 2
    receiver.wait_for_seqs(want, "the two revocations")
    assert {r["json"]["type"] for r in receiver.got} == {"revoked"}
    wait_for(lambda: metric(srv, "sessiond_webhook_skipped_total") >= 2, timeout=DEADLINE,
             what="the created events counted as skipped")


def test_a_failing_receiver_gets_retries_then_everything_in_order(make_server, receiver):
    receiver.fail_next = 3
    srv = make_server(*hook_args(receiver, "--webhook-retry-initial", "20ms", "--webhook-retry-max", "100ms"))
    u = new_user("whr")
    sessions = [srv.api.create(u) for _ in range(3)]
    srv.api.delete(f"/sessions/{sessions[0]['sessionId']}", expect=204)
    want = [s for s, _, _ in store_events(srv, [u])]
    receiver.wait_for_seqs(want)
    with receiver.cond:
        got = list(receiver.got)
    # The first event was tried four times (three 500s, then 204), each a
    # fresh, valid signature of the same id and body; nothing after it went
    # out before it was acknowledged.
    first = got[0]["id"]
    assert [r["id"] for r in got[:4]] == [first] * 4
    assert len({r["body"] for r in got[:4]}) == 1
    assert [r["json"]["data"]["seq"] for r in got[3:]] == want
    wait_for(lambda: metric(srv, "sessiond_webhook_failed_total") == 3, timeout=DEADLINE,
             what="three failed attempts counted")
    assert metric(srv, "sessiond_webhook_dead_letter_total") == 0
    assert "attempt 1 failed: HTTP 500" in srv.log_text()


def test_an_event_that_never_succeeds_is_dead_lettered_and_the_next_delivered(make_server, receiver):
    poison, fine = new_user("whd"), new_user("whd")
    receiver.fail_users.add(poison)
    srv = make_server(*hook_args(receiver, "--webhook-retry-initial", "10ms", "--webhook-retry-max", "20ms",
                                 "--webhook-max-attempts", "3"))
    srv.api.create(poison)
    srv.api.create(fine)
    [(bad, _, _)] = store_events(srv, [poison])
    [(good, _, _)] = store_events(srv, [fine])
    receiver.wait_for_seqs([good], "the event after the dead letter")
    assert [r["json"]["data"]["seq"] for r in receiver.got] == [bad, bad, bad, good]
    assert metric(srv, "sessiond_webhook_dead_letter_total") == 1
    assert metric(srv, "sessiond_webhook_failed_total") == 3
    assert f"gave up event evt_{bad} (created) after 3 attempts" in srv.log_text()


def test_security_events_are_delivered_too(make_server, receiver):
    """Anomaly signals and geofence refusals (another feature's events) are
    the store's like any other, so they are delivered: a refused create
    (no session) and a refused validation."""
    srv = make_server(*hook_args(receiver, "--geo-deny", "RU", "--anomaly-new-country", "flag"))
    u = new_user("whs")
    srv.api.post("/sessions", json={"userId": u, "geoLocation": {"country": "RU"}}, expect=403)
    s = srv.api.create(u, geoLocation={"country": "FR", "lat": 48.8566, "lon": 2.3522})
    srv.api.create(u, geoLocation={"country": "DE", "lat": 52.52, "lon": 13.405})  # a new country
    srv.api.post("/sessions/validate", json={"token": s["token"], "geoLocation": {"country": "RU"}}, expect=403)
    # The refusal at validation is written without the answer waiting for
    # it (and the create's signal with it): poll the store until both are in.
    def complete():
        kinds = [e for _, e, _ in store_events(srv, [u])]
        return kinds.count("geofence_refused") == 2 and "anomaly_detected" in kinds
    wait_for(complete, timeout=DEADLINE, what="the refusal and signal events in the store")
    want = store_events(srv, [u])
    receiver.wait_for_seqs(q for q, _, _ in want)
    got = {r["json"]["data"]["seq"]: r["json"] for r in receiver.got}
    refusals = [got[q] for q, e, _ in want if e == "geofence_refused"]
    assert [r["data"]["reason"] for r in refusals] == ["country=RU denied"] * 2
    assert "sessionId" not in refusals[0]["data"] and refusals[1]["data"]["sessionId"] == s["sessionId"]
    assert all(r["data"]["userId"] == u for r in refusals)


def test_kill9_mid_delivery_then_restart_delivers_every_event(make_server, receiver):
    receiver.hold_nth = 3  # the third delivery is never answered: sessiond is mid-delivery
    srv = make_server(*hook_args(receiver))
    users = [new_user("whk") for _ in range(2)]
    lifecycle(srv, users)
    want = store_events(srv, users)
    wait_for(lambda: len(receiver.got) >= 3, timeout=DEADLINE, what="the held delivery")
    held = receiver.got[2]
    srv.kill9()
    receiver.release.set()
    srv.start()
    # More events after the restart, to see the cursor carry on.
    more = srv.api.create(users[0])
    want = store_events(srv, users)
    assert more["sessionId"] in {sid for _, _, sid in want}
    receiver.wait_for_seqs(s for s, _, _ in want)
    # The held event was never acknowledged: it came again, with the same
    # id and body (a receiver deduplicates by webhook-id).
    again = [r for r in receiver.got if r["id"] == held["id"]]
    assert len(again) >= 2 and {r["body"] for r in again} == {held["body"]}
    for seq in {r["json"]["data"]["seq"] for r in receiver.got}:
        bodies = {r["body"] for r in receiver.got if r["json"]["data"]["seq"] == seq}
        assert len(bodies) == 1, f"evt_{seq} changed between deliveries"
    by_store = {}
    for seq, _, sid in want:
        by_store.setdefault(sid, []).append(seq)
    assert per_session(receiver.got) == by_store


def test_a_stop_cuts_a_hanging_delivery_short_and_it_comes_again(make_server, receiver):
    """A receiver that never answers does not hold the server's stop (the
    attempt is aborted, not counted as failed); the event is sent again
    after the restart."""
    receiver.hold_nth = 1
    srv = make_server(*hook_args(receiver))
    u = new_user("whh")
    srv.api.create(u)
    wait_for(lambda: len(receiver.got) >= 1, timeout=DEADLINE, what="the held delivery")
    held = receiver.got[0]
    srv.stop()  # exit 0 within conftest's stop timeout, with the request still unanswered
    receiver.release.set()
    srv.start()
    # The held request was never answered to sessiond: it comes again.
    wait_for(lambda: [r["id"] for r in receiver.got].count(held["id"]) == 2, timeout=DEADLINE,
             what="the held event delivered again")
    assert "failed" not in srv.log_text(), "an aborted attempt is not a failure"


def test_kill9_while_retrying_then_restart_delivers_every_event(make_server, receiver):
    receiver.fail_next = 1000  # the receiver is down for now
    srv = make_server(*hook_args(receiver, "--webhook-retry-initial", "20ms", "--webhook-retry-max", "50ms"))
    u = new_user("whk2")
    for _ in range(3):
        srv.api.create(u)
    wait_for(lambda: len(receiver.got) >= 3, timeout=DEADLINE, what="a few failed attempts")
    srv.kill9()
    with receiver.cond:
        receiver.fail_next = 0
    srv.start()
    receiver.wait_for_seqs(s for s, _, _ in store_events(srv, [u]))


def test_a_graceful_restart_resumes_after_the_last_delivered_event(make_server, receiver):
    srv = make_server(*hook_args(receiver))
    u = new_user("whg")
    srv.api.create(u)
    first = [s for s, _, _ in store_events(srv, [u])]
    receiver.wait_for_seqs(first)
    srv.stop()  # saves the cursor
    srv.start()
    srv.api.create(u)
    all_seqs = [s for s, _, _ in store_events(srv, [u])]
    receiver.wait_for_seqs(all_seqs)
    assert sorted(receiver.seqs()) == all_seqs, "a graceful stop saved its cursor: nothing twice"


@pytest.mark.skipif(not PG_MODE, reason="replicas share a store only on PostgreSQL")
def test_two_replicas_deliver_each_event_once_and_the_other_takes_over(make_server, receiver):
    a = make_server(*hook_args(receiver))
    store = ["--store", pg().url(pg().database_for(a.data_dir))]
    if CACHE_MODE:
        store += ["--cache", redis().url()]
    b = make_server(*hook_args(receiver), *store)
    u = new_user("whp")
    for i in range(6):
        (a if i % 2 else b).api.create(u)
    want = [s for s, _, _ in store_events(a, [u])]
    receiver.wait_for_seqs(want)
    leaders = [metric(a, "sessiond_webhook_leader"), metric(b, "sessiond_webhook_leader")]
    assert sorted(leaders) == [0, 1], leaders
    assert sorted(receiver.seqs()) == want, "the lease: one replica delivers"
    # The leader stops (its lease is given up): the other delivers.
    leader, other = (a, b) if leaders[0] == 1 else (b, a)
    leader.stop()
    other.api.create(u)
    want = [s for s, _, _ in store_events(other, [u])]
    receiver.wait_for_seqs(want, "the event created after the leader stopped")
    assert metric(other, "sessiond_webhook_leader") == 1


@pytest.mark.skipif(not PG_MODE, reason="replicas share a store only on PostgreSQL")
def test_when_the_delivering_replica_is_killed_another_takes_over_after_its_lease(make_server, receiver):
    receiver.hold_nth = 2  # the leader is killed in the middle of its second delivery
    a = make_server(*hook_args(receiver))
    store = ["--store", pg().url(pg().database_for(a.data_dir))]
    if CACHE_MODE:
        store += ["--cache", redis().url()]
    b = make_server(*hook_args(receiver), *store)
    u = new_user("whl")
    for _ in range(3):
        b.api.create(u)
    wait_for(lambda: len(receiver.got) >= 2, timeout=DEADLINE, what="the held delivery")
    leader, other = (a, b) if metric(a, "sessiond_webhook_leader") == 1 else (b, a)
    held = receiver.got[1]
    leader.kill9()
    receiver.release.set()
    other.api.create(u)
    want = [s for s, _, _ in store_events(other, [u])]
    # The dead replica's lease (30 s) runs out; the other resumes from the
    # last saved cursor: the held event comes again, and everything arrives.
    receiver.wait_for_seqs(want, "every event, through the replica that took over")
    wait_for(lambda: [r["id"] for r in receiver.got].count(held["id"]) >= 2, timeout=DEADLINE,
             what="the held event again")
    assert metric(other, "sessiond_webhook_leader") == 1


def run_sessiond(tmp_path, *args):
    data = tmp_path / "data"
    p = subprocess.run([SESSIOND_BIN, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data), *args],
                       capture_output=True, text=True, timeout=DEADLINE, env=child_env(),
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr


def test_bad_webhook_settings_are_clear_startup_errors(tmp_path):
    secret, path = make_secret(tmp_path)
    bare = tmp_path / "bare"
    bare.write_text(secret[len("whsec_"):] + "\n")
    bare.chmod(0o600)
    cases = [
        (["http://127.0.0.1:9/h"], "expected 'URL SECRET-FILE"),
        ([f"ftp://127.0.0.1:9/h {path}"], "scheme must be http or https"),
        ([f"http:// {path}"], "not a URL"),
        ([f"http://127.0.0.1:9/h {tmp_path}/missing"], "cannot open the webhook secret file"),
        ([f"http://127.0.0.1:9/h {bare}"], "'whsec_' followed by the base64"),
        ([f"http://127.0.0.1:9/h {path} Created"], "audit event names"),
        ([f"http://u:hunter2@127.0.0.1:9/h?k=q1 {path}", f"http://u:hunter2@127.0.0.1:9/h?k=q1 {path}"],
         "the same URL as #1"),
    ]
    for hooks, says in cases:
        args = [a for h in hooks for a in ("--webhook", h)]
        rc, err = run_sessiond(tmp_path, *args)
        assert rc == 2 and says in err, (hooks, rc, err[-800:])
        assert secret not in err and secret[len("whsec_"):] not in err
        assert "hunter2" not in err and "q1" not in err


def test_the_documented_receiving_pipeline_works(make_server, tmp_path):
    """docs/webhooks.md's receiver, run as written (paths and ports aside):
    a token reused after its rotation reaches it, and it revokes the user's
    other sessions through the admin API."""
    doc = (REPO / "docs" / "webhooks.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    secret, secret_path = make_secret(tmp_path)
    port = free_port()
    srv = make_server("--refresh-grace", "0s", start=False)
    for old, new in (("/etc/receiver/webhook.secret", str(secret_path)),
                     ('open("/etc/receiver/sessiond-admin.key").read().strip()', '"unused-in-protected-mode"'),
                     ("/var/lib/receiver/", f"{tmp_path}/"), ("https://sessiond.internal:8443", srv.direct_url),
                     ('("127.0.0.1", 9000)', f'("127.0.0.1", {port})')):
        assert old in code, old
        code = code.replace(old, new)
    (tmp_path / "receiver.py").write_text(code)
    rec = subprocess.Popen(["/usr/bin/python3", str(tmp_path / "receiver.py")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        srv.args += ["--webhook", f"http://127.0.0.1:{port}/hook {secret_path}"]
        srv.start()
        u = new_user("whdoc")
        stolen, other = srv.api.create(u), srv.api.create(u)
        srv.api.post(f"/sessions/{stolen['sessionId']}/refresh",
                     headers={"Authorization": f"Bearer {stolen['token']}"}, expect=200)
        assert srv.api.validate(stolen["token"], touch=False)["isValid"] is False  # reuse: revoked
        # The receiver revokes the user's other sessions in answer.
        wait_for(lambda: not srv.api.validate(other["token"], touch=False)["isValid"], timeout=DEADLINE,
                 what="the pipeline revoking the user's other session")
        lines = wait_for(lambda: (tmp_path / "events.jsonl").exists() and
                         (tmp_path / "events.jsonl").read_text().splitlines(), timeout=DEADLINE,
                         what="the forwarded events")
        assert "token_reuse_detected" in [json.loads(x)["type"] for x in lines]
    finally:
        rec.kill()
        out = rec.communicate(timeout=DEADLINE)[0]
    assert "ALERT token reuse" in out, out

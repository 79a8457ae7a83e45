"""Incident response (issue 19 item 6): the global not-before and triage.

POST /admin/not-before makes every validation refuse every session created
before the given time, on every replica and through the Redis cache, from
the moment it answers 200; sessions created afterwards keep validating.
Run on the embedded store (make e2e), on PostgreSQL with two replicas
(make e2e-postgres) and with the cache tier (make e2e-cache): in cache mode
both replicas have served every old session from Redis before the call.

No timing is assumed: the only wait is a lower bound (the test's clock,
which is the server's, has passed the old sessions' creation), and every
check after the 200 is made at once, never retried.
"""
import json
import re
import time

import pytest

from conftest import audit_log_records, CACHE_MODE, new_user, wait_for
from test_write_conformance import replicas

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def cache_hits(srv):
    text = srv.api.get("/metrics", expect=200).text
    m = re.search(r'^sessiond_cache_requests_total\{result="hit"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def warm(srv, s):
    """srv validates s; in cache mode, until it has served s from Redis."""
    assert valid(srv, s["token"])
    if not CACHE_MODE:
        return
    before = cache_hits(srv)
    wait_for(lambda: valid(srv, s["token"]) and cache_hits(srv) > before, timeout=30,
             interval=0.02, what="the session served from the cache")


def valid(srv, token):
    return srv.api.validate(token, touch=False)["isValid"]


def every_way_valid(srv, s):
    """What each validation path says of s: all True or all False expected."""
    tok = s["token"]
    auth = {"Authorization": f"Bearer {tok}"}
    return {
        "token": valid(srv, tok),
        "id": srv.api.validate_id(s["sessionId"])["isValid"],
        "auth": srv.api.get("/auth", headers=auth).status_code == 200,
        "introspect": srv.api.post("/introspect", data=f"token={tok}".encode(), headers=FORM,
                                   expect=200).json()["active"],
        "me": srv.api.get("/me/sessions", headers=auth).status_code == 200,
        "get": srv.api.get(f"/sessions/{s['sessionId']}").status_code == 200,
    }


def set_not_before(srv, value, expect=200):
    return srv.api.post("/admin/not-before", json={"notBefore": value}, expect=expect)


def after_creation_of(sessions):
    """Waits until this host's clock (the servers') is past every session's
    creation, so "now" is later than each of them: a lower bound only."""
    latest = max(srv.api.get_session(s["sessionId"]).json()["createdAt"] for srv, s in sessions)
    latest_ms = parse_ms(latest)
    wait_for(lambda: time.time() * 1000 > latest_ms + 1, timeout=10, what="the clock past creation")


def parse_ms(text):
    from datetime import datetime
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_not_before_invalidates_every_older_session_on_every_replica_at_once(make_server):
    a, b = replicas(make_server)
    old = [(a, a.api.create(new_user("ir"))) for _ in range(3)] + \
          [(b, b.api.create(new_user("ir"))) for _ in range(3)]
    for _, s in old:
        warm(a, s)
        warm(b, s)
    after_creation_of(old)
    r = set_not_before(a, "now").json()
    assert r["sessionsInvalidated"] == len(old)
    # At once, on both replicas, whatever the cache holds: no retry here.
    for srv in (a, b):
        for _, s in old:
            assert every_way_valid(srv, s) == dict.fromkeys(
                ("token", "id", "auth", "introspect", "me", "get"), False), s["sessionId"]
    assert b.api.get("/admin/not-before", expect=200).json() == {"notBefore": r["notBefore"]}
    # Listings leave them out, for the operator and for the user.
    user = old[0][1]["userId"]
    newer = a.api.create(user)
    assert [x["sessionId"] for x in b.api.list_user(user).json()["sessions"]] == [newer["sessionId"]]
    me = b.api.get("/me/sessions", headers={"Authorization": f"Bearer {newer['token']}"}, expect=200)
    assert [x["sessionId"] for x in me.json()["sessions"]] == [newer["sessionId"]]
    # Newer sessions, created on either replica, keep validating everywhere.
    new = [a.api.create(new_user("ir")), b.api.create(new_user("ir"))]
    for srv in (a, b):
        for s in new:
            assert all(every_way_valid(srv, s).values()), s["sessionId"]
    # A refresh of an old session finds nothing to refresh.
    _, s = old[0]
    b.api.post(f"/sessions/{s['sessionId']}/refresh", headers={"Authorization": f"Bearer {s['token']}"},
               expect=404)
    # Audited with the count (in the setter's audit log).
    wait_for(lambda: [e for e in audit_log_records(a) if e["event"] == "not_before_set"], timeout=30,
             what="the not_before_set audit record")
    (e,) = [e for e in audit_log_records(a) if e["event"] == "not_before_set"]
    assert e["reason"] == f"sessions={len(old)}" and e["sessionId"] is None


def test_not_before_is_only_raised_and_survives_a_restart(make_server):
    a, b = replicas(make_server)
    assert a.api.get("/admin/not-before", expect=200).json() == {"notBefore": None}
    s = a.api.create(new_user("ir"))
    created = parse_ms(a.api.get_session(s["sessionId"]).json()["createdAt"])
    earlier = "2020-01-01T00:00:00Z"
    r = set_not_before(a, earlier).json()
    assert r == {"notBefore": "2020-01-01T00:00:00.000Z", "sessionsInvalidated": 0}
    assert valid(b, s["token"])
    # Exactly at the creation time: not before it, still valid.
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created // 1000)) + ".%03dZ" % (created % 1000)
    assert set_not_before(b, at).json() == {"notBefore": at, "sessionsInvalidated": 0}
    assert valid(a, s["token"]) and valid(b, s["token"])
    # An earlier time leaves the later one in force.
    assert set_not_before(a, earlier).json()["notBefore"] == at
    a.restart()
    assert a.api.get("/admin/not-before", expect=200).json() == {"notBefore": at}
    assert valid(a, s["token"])


def test_not_before_after_a_restart_still_refuses(make_server):
    a, _ = replicas(make_server)
    s = a.api.create(new_user("ir"))
    after_creation_of([(a, s)])
    assert set_not_before(a, "now").json()["sessionsInvalidated"] == 1
    a.restart()
    assert not valid(a, s["token"])
    assert valid(a, a.api.create(new_user("ir"))["token"])


@pytest.mark.parametrize("body", [
    {},
    {"notBefore": None},
    {"notBefore": 5},
    {"notBefore": "yesterday"},
    {"notBefore": "2999-01-01T00:00:00Z"},
    {"notBefore": "now", "extra": 1},
    {"notBefore": ""},
    [],
], ids=lambda b: json.dumps(b))
def test_bad_not_before_is_a_400_problem(make_server, body):
    a = make_server()
    r = a.api.post("/admin/not-before", json=body, expect=400)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert a.api.get("/admin/not-before", expect=200).json() == {"notBefore": None}


@pytest.mark.no_prism("Prism answers a body that is not JSON itself")
def test_not_json_is_a_400(make_server):
    a = make_server()
    r = a.api.post("/admin/not-before", data=b"{not json", headers={"Content-Type": "application/json"},
                   expect=400)
    assert r.headers["Content-Type"].startswith("application/problem+json")


# ---- triage: revoke by client network or device ---------------------------

def revoke(srv, body, expect=200):
    return srv.api.post("/admin/revoke", json=body, expect=expect)


def test_triage_by_network_ends_those_sessions_on_every_replica(make_server):
    a, b = replicas(make_server)
    hit = [a.api.create(new_user("tr"), ipAddress=ip) for ip in ("203.0.113.7", "203.0.113.250")] + \
          [b.api.create(new_user("tr"), ipAddress="2001:db8:5::1")]
    spared = [a.api.create(new_user("tr"), ipAddress=ip) for ip in ("203.0.114.7", "198.51.100.1")] + \
             [b.api.create(new_user("tr"))]  # no address
    for s in hit + spared:
        warm(a, s)
        warm(b, s)
    assert revoke(b, {"network": "203.0.113.0/24"}).json() == {"revoked": 2}
    assert revoke(a, {"network": "2001:db8::/32"}).json() == {"revoked": 1}
    for srv in (a, b):
        for s in hit:
            assert every_way_valid(srv, s) == dict.fromkeys(
                ("token", "id", "auth", "introspect", "me", "get"), False), s["sessionId"]
        for s in spared:
            assert valid(srv, s["token"]), s["sessionId"]
    ev = a.api.get(f"/sessions/{hit[0]['sessionId']}/events", expect=200).json()["events"]
    assert [(e["event"], e.get("reason")) for e in ev][-1] == ("revoked", "incident_revoked")
    # Again: nothing left to end.
    assert revoke(a, {"network": "203.0.113.0/24"}).json() == {"revoked": 0}
    # Audited with the count, in the audit log of the replica that wrote it.
    wait_for(lambda: "sessions=2" in [e["reason"] for e in audit_log_records(b)
                                      if e["event"] == "incident_revoked"],
             timeout=30, what="the incident_revoked audit record with its count")


def test_triage_by_device_over_several_batches_and_sealed_attrs(make_server, tmp_path):
    keys = tmp_path / "enc.keys"
    keys.write_text("k1 " + "ab" * 32 + "\n")
    keys.chmod(0o600)
    a, b = replicas(make_server, "--encryption-keys", str(keys))
    device = "stolen-laptop-1"
    # More than one batch (500 rows) of other sessions around the device's.
    first = a.api.create(new_user("tr"), deviceId=device)
    for i in range(520):
        a.api.create(new_user("tr"), deviceId=f"other-{i}")
    last = b.api.create(new_user("tr"), deviceId=device)
    other = a.api.create(new_user("tr"), deviceId="other-x")
    for s in (first, last, other):
        warm(b, s)
    assert revoke(a, {"deviceId": device}).json() == {"revoked": 2}
    for srv in (a, b):
        assert not valid(srv, first["token"]) and not valid(srv, last["token"])
        assert valid(srv, other["token"])


def test_triage_dry_run_counts_the_matches_and_ends_none(make_server):
    """The console's preview: the same match, nothing ended, no event."""
    a, b = replicas(make_server)
    hit = [a.api.create(new_user("tr"), ipAddress="203.0.113.7"),
           b.api.create(new_user("tr"), ipAddress="203.0.113.8", deviceId="lost-phone")]
    spared = a.api.create(new_user("tr"), ipAddress="198.51.100.1", deviceId="other-phone")
    for s in hit + [spared]:
        warm(a, s)
        warm(b, s)
    assert revoke(b, {"network": "203.0.113.0/24", "dryRun": True}).json() == {"matching": 2}
    assert revoke(a, {"dryRun": True, "deviceId": "lost-phone"}).json() == {"matching": 1}
    for srv in (a, b):
        for s in hit + [spared]:
            assert valid(srv, s["token"]), s["sessionId"]
    ev = a.api.get(f"/sessions/{hit[0]['sessionId']}/events", expect=200).json()["events"]
    assert [e["event"] for e in ev] == ["created"]
    # dryRun false is the revocation itself; then nothing is left to match.
    assert revoke(a, {"network": "203.0.113.0/24", "dryRun": False}).json() == {"revoked": 2}
    assert revoke(b, {"network": "203.0.113.0/24", "dryRun": True}).json() == {"matching": 0}
    assert valid(a, spared["token"]) and valid(b, spared["token"])


def test_triage_passes_over_sessions_the_not_before_cut_off(make_server):
    """They can no longer validate: neither counted nor ended again."""
    a, b = replicas(make_server)
    old = [(a, a.api.create(new_user("tr"), ipAddress="203.0.113.7")),
           (b, b.api.create(new_user("tr"), ipAddress="203.0.113.8"))]
    after_creation_of(old)
    assert set_not_before(a, "now").json()["sessionsInvalidated"] == 2
    new = b.api.create(new_user("tr"), ipAddress="203.0.113.9")
    assert revoke(b, {"network": "203.0.113.0/24", "dryRun": True}).json() == {"matching": 1}
    assert revoke(a, {"network": "203.0.113.0/24"}).json() == {"revoked": 1}
    for srv in (a, b):
        assert not valid(srv, new["token"])
    ev = a.api.get(f"/sessions/{new['sessionId']}/events", expect=200).json()["events"]
    assert [(e["event"], e.get("reason")) for e in ev][-1] == ("revoked", "incident_revoked")


@pytest.mark.parametrize("body", [
    {},
    {"dryRun": True},
    {"network": "203.0.113.0/24", "dryRun": "yes"},
    {"network": "203.0.113.0/24", "dryRun": 1},
    {"network": "203.0.113.0/24", "deviceId": "d"},
    {"network": "203.0.113.1/24"},
    {"network": "203.0.113.0/33"},
    {"network": "example.com"},
    {"network": 24},
    {"deviceId": ""},
    {"deviceId": 5},
    {"deviceId": "x" * 257},
    {"sessionIds": []},
], ids=lambda b: json.dumps(b)[:40])
def test_bad_triage_is_a_400_problem(make_server, body):
    a = make_server()
    s = a.api.create(new_user("tr"), ipAddress="203.0.113.1", deviceId="d")
    r = revoke(a, body, expect=400)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert valid(a, s["token"])

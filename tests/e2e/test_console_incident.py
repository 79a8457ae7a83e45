"""The console's Incident view (issue 19 item 6) in Debian's headless
Chromium, driven by tests/browser/incident-check.mjs (the "incident"
scenario of console-check.mjs) in three phases, each a fresh page signed in
with an admin key. Between phases this test checks through the HTTP API
what the page did, or did not do:

  cancel   the preview's count; Cancel in both dialogs and the server's
           refusals (shown to the operator) change nothing
  triage   exactly the sessions of the network end; every other validates
  signout  every session created before the cut stops validating, one
           created after it validates

Waits are for states (the page's, or the clock passing a time), never
fixed delays."""

import secrets
import time
from datetime import datetime

from conftest import audit_log_records, new_user, wait_for
from test_console import _key_line, _out_dir, _run_browser

NETWORK = "203.0.113.0/24"


def _ms(text):
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_incident_view_in_chromium(make_server, tmp_path):
    key = secrets.token_urlsafe(32)
    keys = tmp_path / "keys"
    keys.write_text(_key_line("secops", key, "sessions,admin,validate"))
    srv = make_server("--api-keys", str(keys))
    api = srv.api
    hdr = {"X-Api-Key": key}

    def create(**fields):
        return api.post("/sessions", json=dict(fields, userId=new_user("incident")), headers=hdr,
                        expect=201).json()

    def valid(s):
        return api.post("/sessions/validate", params={"touch": "false"}, expect=200,
                        headers=dict(hdr, Authorization=f"Bearer {s['token']}")).json()["isValid"]

    def events(s):
        return api.get(f"/sessions/{s['sessionId']}/events", headers=hdr, expect=200).json()["events"]

    def not_before():
        return api.get("/admin/not-before", headers=hdr, expect=200).json()["notBefore"]

    def browser(phase, name):
        return _run_browser(tmp_path / name, {
            "scenario": "incident", "baseUrl": srv.url, "key": key, "outDir": str(_out_dir()),
            "incident": {"phase": phase, "network": NETWORK, "badNetwork": "203.0.113.1/24"},
        })

    hit = [create(ipAddress=ip, deviceId=f"d{i}") for i, ip in enumerate(("203.0.113.7", "203.0.113.250",
                                                                            "203.0.113.0"))]
    spared = [create(ipAddress="203.0.114.7"), create(ipAddress="198.51.100.1"),
              create(ipAddress="2001:db8::7"), create(deviceId="no-address")]
    everyone = hit + spared
    for p in ("cancel", "triage", "signout"):
        (tmp_path / p).mkdir()

    # Cancel and refusals: nothing changes.
    r = browser("cancel", "cancel")
    assert r["notBeforeShown"] == "none"
    assert "host bits set" in r["badNetworkError"], r["badNetworkError"]
    assert r["previewCount"] == len(hit), r["previewText"]
    assert NETWORK in r["previewText"] and "3 active sessions" in r["previewText"]
    assert r["triageDialog"]["title"] == "Revoke 3 sessions?"
    assert NETWORK in r["triageDialog"]["text"] and "cannot be undone" in r["triageDialog"]["text"]
    assert r["signOutDialog"]["ok"] == "Sign everyone out"
    assert "Every session created before this moment stops validating" in r["signOutDialog"]["text"]
    assert "must not be in the future" in r["futureError"], r["futureError"]
    assert r["notBeforeAfterCancel"] == "none"
    assert not_before() is None
    for s in everyone:
        assert valid(s), s["sessionId"]
        assert [e["event"] for e in events(s)] == ["created"], s["sessionId"]

    # Triage by network: exactly those sessions end.
    r = browser("triage", "triage")
    assert r["previewCount"] == len(hit) and r["revoked"] == len(hit), r
    assert "Revoked 3 sessions from the network 203.0.113.0/24" in r["revokedText"]
    for s in hit:
        assert not valid(s), s["sessionId"]
        last = events(s)[-1]
        assert (last["event"], last["reason"], last["actor"]) == ("revoked", "incident_revoked", "secops")
    for s in spared:
        assert valid(s), s["sessionId"]
    wait_for(lambda: [e for e in audit_log_records(srv) if e["event"] == "incident_revoked"
                      and e["reason"] == f"sessions={len(hit)}"], timeout=30,
             what="the incident_revoked audit record with its count")

    # Sign everyone out: the clock (the server's) past the last creation
    # first, so "now" is later than each of them (a lower bound, not a delay).
    latest = max(_ms(s["createdAt"]) for s in spared)
    wait_for(lambda: time.time() * 1000 > latest + 1, timeout=30, what="the clock past creation")
    r = browser("signout", "signout")
    assert r["invalidated"] == len(spared), r["signOutText"]
    assert r["notBeforeShown"] == not_before() and _ms(r["notBeforeShown"]) > latest
    for s in everyone:
        assert not valid(s), s["sessionId"]
    after = create(ipAddress="203.0.113.9")
    assert valid(after)
    wait_for(lambda: [e for e in audit_log_records(srv) if e["event"] == "not_before_set"
                      and e["reason"] == f"sessions={len(spared)}"], timeout=30,
             what="the not_before_set audit record with its count")

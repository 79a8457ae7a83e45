"""Optional session binding: a session created with "bind" validates only
from the client context it was created in (its ipAddress network and/or
userAgent); policy enforce (invalid, reason binding_mismatch) or flag."""
import hashlib
import time
import sqlite3

import pytest

from conftest import audit_log_records, history_rows, new_user, record_token, wait_for

UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


def _validate(api, token, **ctx):
    return api.post("/sessions/validate", json={"token": token, **ctx}, expect=200).json()


def test_enforced_binding_to_ip_and_user_agent(make_server):
    srv = make_server()
    a = srv.api
    s = a.create(new_user("bind"), ipAddress="203.0.113.7", userAgent=UA, bind={"ip": True, "userAgent": True})
    record_token(s["token"])
    assert s["bind"] == {"ip": True, "userAgent": True}
    assert a.get_session(s["sessionId"]).json()["bind"] == {"ip": True, "userAgent": True}
    ok = _validate(a, s["token"], ipAddress="203.0.113.7", userAgent=UA)
    assert ok["isValid"] is True and "bindingMismatch" not in ok
    for ctx in ({"ipAddress": "198.51.100.1", "userAgent": UA}, {"ipAddress": "203.0.113.7", "userAgent": "curl/8"},
                {"ipAddress": "203.0.113.7"}, {}, {"ipAddress": "not-an-ip", "userAgent": UA}):
        bad = _validate(a, s["token"], **ctx)
        assert bad == {"isValid": False, "expiry": None, "reason": "binding_mismatch"}, (ctx, bad)
    # Bearer plus context in the body works the same.
    r = a.post("/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"},
               json={"ipAddress": "203.0.113.7", "userAgent": UA}, expect=200).json()
    assert r["isValid"] is True
    # An unbound session ignores the context.
    u = a.create(new_user("bind"), ipAddress="203.0.113.7")
    record_token(u["token"])
    assert "bind" not in u
    assert _validate(a, u["token"], ipAddress="192.0.2.1")["isValid"] is True
    # Mismatches are logged and audited, never with the token.
    assert "binding_mismatch session=" + s["sessionId"] in srv.log_text()

    def audited():
        recs = audit_log_records(srv)
        return [r for r in recs if r["event"] == "binding_mismatch"]
    recs = wait_for(lambda: len(audited()) >= 5 and audited(), timeout=5, what="binding_mismatch records")
    assert recs[0]["sessionId"] == s["sessionId"] and recs[0]["reason"] == "rejected"
    # The binding survives a restart (the index is rebuilt from the store).
    srv.restart()
    assert _validate(a, s["token"], ipAddress="198.51.100.1", userAgent=UA)["isValid"] is False
    assert _validate(a, s["token"], ipAddress="203.0.113.7", userAgent=UA)["isValid"] is True


def test_network_prefixes(make_server):
    srv = make_server("--binding-ipv4-prefix", "24", "--binding-ipv6-prefix", "48")
    a = srv.api
    v4 = a.create(new_user("bind"), ipAddress="203.0.113.7", bind={"ip": True})
    v6 = a.create(new_user("bind"), ipAddress="2001:db8:1:2::7", bind={"ip": True})
    for s in (v4, v6):
        record_token(s["token"])
    assert _validate(a, v4["token"], ipAddress="203.0.113.250")["isValid"] is True
    assert _validate(a, v4["token"], ipAddress="203.0.114.7")["isValid"] is False
    assert _validate(a, v4["token"], ipAddress="::ffff:203.0.113.7")["isValid"] is False  # another family
    assert _validate(a, v6["token"], ipAddress="2001:db8:1:ffff::1")["isValid"] is True
    assert _validate(a, v6["token"], ipAddress="2001:db8:2::7")["isValid"] is False


def test_flag_policy_answers_valid_and_says_so(make_server):
    srv = make_server("--binding-policy", "flag")
    a = srv.api
    s = a.create(new_user("bind"), userAgent=UA, bind={"userAgent": True})
    record_token(s["token"])
    r = _validate(a, s["token"], userAgent="curl/8")
    assert r["isValid"] is True and r["bindingMismatch"] is True
    assert "bindingMismatch" not in _validate(a, s["token"], userAgent=UA)
    h = a.get("/auth", headers={"Authorization": f"Bearer {s['token']}", "User-Agent": "curl/8"}, expect=200)
    assert h.headers["X-Session-Binding-Mismatch"] == "1"


def test_forward_auth_reads_the_gateways_client_context(make_server):
    srv = make_server()
    a = srv.api
    s = a.create(new_user("bind"), ipAddress="203.0.113.7", userAgent=UA, bind={"ip": True, "userAgent": True})
    record_token(s["token"])
    auth = {"Authorization": f"Bearer {s['token']}", "User-Agent": UA}
    a.get("/auth", headers={**auth, "X-Real-IP": "203.0.113.7"}, expect=200)
    r = a.get("/auth", headers={**auth, "X-Real-IP": "198.51.100.1"}, expect=401)
    assert "bound to another client context" in r.json()["detail"]
    a.get("/auth", headers=auth, expect=401)  # no X-Real-IP: fails closed
    # Introspection carries no context: a bound session is inactive there.
    r = a.post("/introspect", data=f"token={s['token']}",
               headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=200)
    assert r.json() == {"active": False}


def test_bad_bindings_are_refused(server):
    a = server.api
    u = new_user("bind")
    for body, word in (({"bind": {"ip": True}}, "ipAddress"), ({"bind": {"userAgent": True}}, "userAgent"),
                       ({"bind": True}, "object"), ({"bind": {"ip": "yes"}, "ipAddress": "192.0.2.1"}, "boolean"),
                       ({"bind": {"mac": True}}, "may only hold")):
        r = a.post("/sessions", json={"userId": u, **body}, expect=400)
        assert word in r.json()["detail"], (body, r.json())
    s = a.create(u, ipAddress="192.0.2.1", bind={"ip": True})
    record_token(s["token"])
    r = a.put(f"/sessions/{s['sessionId']}", json={"bind": {"ip": False}}, expect=400)
    assert "bind" in r.json()["detail"]
    a.post("/sessions/validate", json={"token": s["token"], "ipAddress": 7}, expect=400)
    a.post("/sessions/validate", json={"token": s["token"], "other": "x"}, expect=400)


V1_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions( id TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL UNIQUE, user_id TEXT NOT NULL,
 created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, expiry INTEGER NOT NULL,
 absolute_expiry INTEGER NOT NULL, idle_ttl INTEGER NOT NULL, version INTEGER NOT NULL, attrs TEXT NOT NULL);
CREATE TABLE session_history( id TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL, user_id TEXT NOT NULL,
 created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, expiry INTEGER NOT NULL,
 absolute_expiry INTEGER NOT NULL, idle_ttl INTEGER NOT NULL, version INTEGER NOT NULL,
 attrs TEXT NOT NULL, ended_at INTEGER NOT NULL, end_reason TEXT NOT NULL);
INSERT INTO meta VALUES('schema_version', '1');
"""


@pytest.mark.sqlite_only("an old SQLite store file is upgraded; PostgreSQL has its own migrations")
def test_a_version_1_store_is_upgraded_in_place(make_server, tmp_path):
    data = tmp_path / "old"
    data.mkdir()
    db = sqlite3.connect(data / "sessiond.db")
    db.executescript(V1_SCHEMA)
    # A session of the old store: its row survives version 3's rebuild of the
    # table, under its rowid, and its token still validates.
    old_token = "oldStoreToken_" + "x" * 29   # the shape of a token: 43 base64url characters
    old_hash = hashlib.sha256(old_token.encode()).digest()
    now = int(time.time() * 1000)
    db.execute("INSERT INTO sessions(rowid, id, token_hash, user_id, created_at, last_seen, expiry,"
               " absolute_expiry, idle_ttl, version, attrs) VALUES(7, 'AAAAAAAoldSession00000', ?, 'old-user',"
               " ?, ?, ?, ?, 3600000, 1, '{}')", (old_hash, now, now, now + 3600000, now + 86400000))
    # And one that expired while the old version was stopped: version 6's
    # sweep finds it through the in-memory index, with no index on expiry.
    db.execute("INSERT INTO sessions(rowid, id, token_hash, user_id, created_at, last_seen, expiry,"
               " absolute_expiry, idle_ttl, version, attrs) VALUES(8, 'AAAAAAAexpSession00000', ?, 'old-user',"
               " ?, ?, ?, ?, 60000, 1, '{}')",
               (hashlib.sha256(b"expired").digest(), now - 120000, now - 120000, now - 60000, now + 86400000))
    db.commit()
    db.close()
    srv = make_server(data_dir=data)
    s = srv.api.create(new_user("bind"), ipAddress="192.0.2.1", bind={"ip": True})
    record_token(s["token"])
    assert _validate(srv.api, s["token"], ipAddress="192.0.2.1")["isValid"] is True
    srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)  # copies into history with the new column
    assert "upgraded the schema to version 2" in srv.log_text()
    assert "upgraded the schema to version 3" in srv.log_text()
    assert "upgraded the schema to version 4" in srv.log_text()
    assert "upgraded the schema to version 5" in srv.log_text()
    assert "upgraded the schema to version 6" in srv.log_text()
    assert "upgraded the schema to version 7" in srv.log_text()
    r = _validate(srv.api, old_token)
    assert r["isValid"] is True and r["userId"] == "old-user", r
    rows = wait_for(lambda: history_rows(data, "AAAAAAAexpSession00000"), timeout=30,
                    what="the sweeper to move the session that expired before the upgrade")
    assert rows[0][3] == "expired", rows
    srv.stop()
    db = sqlite3.connect(data / "sessiond.db")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("7",)
    assert db.execute("SELECT rowid FROM sessions WHERE id='AAAAAAAoldSession00000'").fetchone() == (7,)
    indexed = {r[0] for r in db.execute("SELECT ii.name FROM pragma_index_list('sessions') il, "
                                        "pragma_index_info(il.name) ii")}
    assert "token_hash" not in indexed and "id" in indexed and "user_id" not in indexed, indexed
    assert "last_seen" not in indexed, indexed  # version 5: by user alone
    assert "expiry" not in indexed, indexed  # version 6: expiries in the in-memory index
    ev_indexes = {r[1] for r in db.execute("PRAGMA index_list('audit_events')")}
    assert "events_by_user" not in ev_indexes and "events_by_user_alone" in ev_indexes, ev_indexes
    db.close()

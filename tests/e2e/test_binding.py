"""Optional session binding: a session created with "bind" validates only
from the client context it was created in (its ipAddress network and/or
userAgent); policy enforce (invalid, reason binding_mismatch) or flag."""
import hashlib
import sqlite3
import subprocess
import time

import pytest

from conftest import (SESSIOND_BIN, audit_log_records, child_env, free_port, history_rows, new_user, record_token,
                      wait_for)

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
    assert "upgraded the schema to version 8" in srv.log_text()
    r = _validate(srv.api, old_token)
    assert r["isValid"] is True and r["userId"] == "old-user", r
    rows = wait_for(lambda: history_rows(data, "AAAAAAAexpSession00000"), timeout=30,
                    what="the sweeper to move the session that expired before the upgrade")
    assert rows[0][3] == "expired", rows
    srv.stop()
    db = sqlite3.connect(data / "sessiond.db")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("8",)
    assert db.execute("SELECT rowid FROM sessions WHERE id='AAAAAAAoldSession00000'").fetchone() == (7,)
    indexed = {r[0] for r in db.execute("SELECT ii.name FROM pragma_index_list('sessions') il, "
                                        "pragma_index_info(il.name) ii")}
    assert "token_hash" not in indexed and "id" in indexed and "user_id" not in indexed, indexed
    assert "last_seen" not in indexed, indexed  # version 5: by user alone
    assert "expiry" not in indexed, indexed  # version 6: expiries in the in-memory index
    ev_indexes = {r[1] for r in db.execute("PRAGMA index_list('audit_events')")}
    assert "events_by_user" not in ev_indexes and "events_by_user_alone" in ev_indexes, ev_indexes
    assert "events_by_session" not in ev_indexes, ev_indexes  # version 8: chained
    db.close()


# A store as version 7 left it: a session's events found through an index
# on (session_id, seq).
V7_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions( id TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL, user_id TEXT NOT NULL,
 created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, expiry INTEGER NOT NULL,
 absolute_expiry INTEGER NOT NULL, idle_ttl INTEGER NOT NULL, version INTEGER NOT NULL,
 attrs TEXT NOT NULL, binding BLOB, auth_time INTEGER, acr TEXT);
CREATE TABLE session_history( id TEXT NOT NULL UNIQUE, token_hash BLOB NOT NULL, user_id TEXT NOT NULL,
 created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, expiry INTEGER NOT NULL,
 absolute_expiry INTEGER NOT NULL, idle_ttl INTEGER NOT NULL, version INTEGER NOT NULL,
 attrs TEXT NOT NULL, ended_at INTEGER NOT NULL, end_reason TEXT NOT NULL, binding BLOB,
 auth_time INTEGER, acr TEXT);
CREATE INDEX history_by_ended ON session_history(ended_at);
CREATE INDEX history_by_user ON session_history(user_id, ended_at);
CREATE TABLE rotated_tokens(token_hash BLOB PRIMARY KEY, session_id TEXT NOT NULL,
 rotated_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX rotated_by_time ON rotated_tokens(rotated_at);
CREATE TABLE audit_events(seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
 event TEXT NOT NULL, session_id TEXT, user_id TEXT, actor TEXT, address TEXT, reason TEXT);
CREATE INDEX events_by_session ON audit_events(session_id, seq);
CREATE INDEX events_by_user_alone ON audit_events(user_id, seq) WHERE session_id IS NULL;
CREATE INDEX events_ended ON audit_events(seq) WHERE event IN ('revoked', 'evicted');
INSERT INTO meta VALUES('schema_version', '7');
"""


@pytest.mark.sqlite_only("an old SQLite store file is upgraded; PostgreSQL has its own migrations")
def test_a_version_7_store_keeps_each_sessions_events(make_server, tmp_path):
    """Version 8 chains a session's events instead of indexing them by
    session: the events an older store holds are chained by the upgrade, in
    order, and new ones follow them, for an active session, an ended one and
    their user."""
    data = tmp_path / "v7"
    data.mkdir()
    db = sqlite3.connect(data / "sessiond.db")
    db.executescript(V7_SCHEMA)
    now = int(time.time() * 1000)
    live, ended, user = "AAAAAAAliveSession0000", "AAAAAAAendedSession000", "v7-user"
    db.execute("INSERT INTO sessions(id, token_hash, user_id, created_at, last_seen, expiry,"
               " absolute_expiry, idle_ttl, version, attrs) VALUES(?, ?, ?, ?, ?, ?, ?, 3600000, 2, '{}')",
               (live, hashlib.sha256(b"live").digest(), user, now, now, now + 3600000, now + 86400000))
    db.execute("INSERT INTO session_history(id, token_hash, user_id, created_at, last_seen, expiry,"
               " absolute_expiry, idle_ttl, version, attrs, ended_at, end_reason)"
               " VALUES(?, ?, ?, ?, ?, ?, ?, 3600000, 1, '{}', ?, 'revoked')",
               (ended, hashlib.sha256(b"ended").digest(), user, now, now, now + 3600000, now + 86400000, now))
    for event, sid, uid in (("created", live, user), ("created", ended, user), ("updated", live, user),
                            ("revoked", ended, user), ("geofence_refused", None, user),
                            ("created", "AAAAAAAotherUser000000", "someone-else")):
        db.execute("INSERT INTO audit_events(at, event, session_id, user_id) VALUES(?, ?, ?, ?)",
                   (now, event, sid, uid))
    db.commit()
    db.close()
    srv = make_server(data_dir=data)
    a = srv.api

    def events(path, **params):
        return [(e["seq"], e["event"]) for e in a.get(path, params=params, expect=200).json()["events"]]

    assert "upgraded the schema to version 8" in srv.log_text()
    assert events(f"/sessions/{live}/events") == [(1, "created"), (3, "updated")]
    assert events(f"/sessions/{ended}/events") == [(2, "created"), (4, "revoked")]
    a.put(f"/sessions/{live}", json={"data": {"n": 1}}, expect=200)
    after = events(f"/sessions/{live}/events")
    assert [e for _, e in after] == ["created", "updated", "updated"] and after[2][0] > 6, after
    assert events(f"/sessions/{live}/events", after=1) == after[1:]
    assert events(f"/sessions/{live}/events", limit=1) == after[:1]
    assert events(f"/users/{user}/events") == [(1, "created"), (2, "created"), (3, "updated"),
                                               (4, "revoked"), (5, "geofence_refused"), after[2]]
    assert events(f"/users/{user}/events", after=3, limit=2) == [(4, "revoked"), (5, "geofence_refused")]
    a.delete(f"/sessions/{live}", expect=204)
    assert [e for _, e in events(f"/sessions/{live}/events")] == ["created", "updated", "updated", "revoked"]
    srv.stop()
    db = sqlite3.connect(data / "sessiond.db")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("8",)
    ev_indexes = {r[1] for r in db.execute("PRAGMA index_list('audit_events')")}
    assert "events_by_session" not in ev_indexes, ev_indexes
    # An older sessiond opens the store again: its schema makes the index
    # again, and it writes an event without chaining it.
    db.execute("CREATE INDEX IF NOT EXISTS events_by_session ON audit_events(session_id, seq)")
    db.execute("INSERT INTO audit_events(at, event, session_id, user_id) VALUES(?, 'geofence_refused', ?, ?)",
               (now, ended, user))
    db.commit()
    db.close()
    srv = make_server(data_dir=data)
    a = srv.api
    assert "chained the audit events again" in srv.log_text()
    assert [e for _, e in events(f"/sessions/{ended}/events")] == ["created", "revoked", "geofence_refused"]
    assert [e for _, e in events(f"/sessions/{live}/events")] == ["created", "updated", "updated", "revoked"]
    srv.stop()
    db = sqlite3.connect(data / "sessiond.db")
    assert "events_by_session" not in {r[1] for r in db.execute("PRAGMA index_list('audit_events')")}
    db.close()


@pytest.mark.sqlite_only("an SQLite store file; PostgreSQL refuses a newer schema in its own migrations")
def test_a_store_newer_than_the_binary_is_refused(tmp_path):
    """A store whose schema version this sessiond does not know yet is not
    opened: its rows would be written without what the newer version
    keeps (the chains of events of version 8, say)."""
    data = tmp_path / "newer"
    data.mkdir()
    db = sqlite3.connect(data / "sessiond.db")
    db.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES('schema_version', '99');")
    db.close()
    p = subprocess.run([SESSIOND_BIN, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data)],
                       cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert "schema version 99, newer than this sessiond knows" in out, out[-500:]
    db = sqlite3.connect(data / "sessiond.db")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("99",)
    assert db.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'sessions'").fetchone() == (0,)
    db.close()

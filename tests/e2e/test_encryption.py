"""Encryption at rest: with --encryption-keys, a session's sensitive
metadata is sealed with AES-256-GCM under the newest key (key ids rotate;
`sessiond reencrypt` moves old rows to the newest key). The data files are
scanned for the plaintext."""
import secrets
import sqlite3
import subprocess

from conftest import SESSIOND_BIN, child_env, new_user, record_token

MARKERS = {"ipAddress": "198.51.100.173", "userAgent": "UA-MARKER-7f3a", "deviceInfo": "DEVICE-MARKER-91",
           "geoLocation": "GEO-MARKER-55"}
DATA_MARKER = "DATA-MARKER-42"


def _keyfile(path, *ids):
    path.write_text("# id  key\n" + "".join(f"{i} {secrets.token_hex(32)}\n" for i in ids))
    path.chmod(0o600)
    return path


def _append_key(path, key_id):
    with open(path, "a") as f:
        f.write(f"{key_id} {secrets.token_hex(32)}\n")


def _create(api):
    s = api.create(new_user("enc"), **MARKERS, data={"secret": DATA_MARKER})
    record_token(s["token"])
    return s


def _data_bytes(srv):
    return b"".join(p.read_bytes() for p in srv.data_dir.iterdir() if p.is_file())


def _attrs(srv, table="sessions"):
    db = sqlite3.connect(srv.db_path)
    try:
        return [r[0] for r in db.execute(f"SELECT attrs FROM {table}")]
    finally:
        db.close()


def _reencrypt(srv, keys):
    return subprocess.run([SESSIOND_BIN, "reencrypt", "--data-dir", str(srv.data_dir), "--encryption-keys",
                           str(keys)], capture_output=True, text=True, env=child_env(), timeout=60,
                          stdin=subprocess.DEVNULL)


def test_metadata_is_sealed_and_reads_back(make_server, tmp_path):
    keys = _keyfile(tmp_path / "enc.keys", "k1")
    srv = make_server("--encryption-keys", str(keys))
    a = srv.api
    s = _create(a)
    got = a.get_session(s["sessionId"]).json()
    for k, v in MARKERS.items():
        assert got[k] == v
    assert got["data"] == {"secret": DATA_MARKER}
    a.put(f"/sessions/{s['sessionId']}", json={"data": {"more": "DATA-MARKER-43"}}, expect=200)
    assert a.get_session(s["sessionId"]).json()["data"] == {"secret": DATA_MARKER, "more": "DATA-MARKER-43"}
    gone = _create(a)
    a.delete(f"/sessions/{gone['sessionId']}", expect=204)
    assert a.list_user(got["userId"]).json()["sessions"][0]["deviceInfo"] == MARKERS["deviceInfo"]
    assert "encrypted at rest under key 'k1'" in srv.log_text()
    srv.stop()
    raw = _data_bytes(srv)
    for marker in [*MARKERS.values(), DATA_MARKER, "DATA-MARKER-43"]:
        assert marker.encode() not in raw, f"{marker} is stored in the clear"
    assert all(x.startswith("$sd1$k1$") for x in _attrs(srv) + _attrs(srv, "session_history"))


def test_without_a_key_it_says_so_and_the_scan_would_see_plaintext(make_server):
    srv = make_server()
    _create(srv.api)
    assert "stored in the clear" in srv.log_text()
    srv.stop()
    assert DATA_MARKER.encode() in _data_bytes(srv), "the scan must be able to find plaintext"


def test_key_rotation_and_reencrypt(make_server, tmp_path):
    keys = _keyfile(tmp_path / "enc.keys", "k1")
    srv = make_server("--encryption-keys", str(keys))
    old = _create(srv.api)
    ended = _create(srv.api)
    srv.api.delete(f"/sessions/{ended['sessionId']}", expect=204)
    srv.stop()
    plain_era = _attrs(srv)
    # Rotate: append k2. Old rows still read; new writes use k2.
    _append_key(keys, "k2")
    srv.start()
    assert srv.api.get_session(old["sessionId"]).json()["deviceInfo"] == MARKERS["deviceInfo"]
    new = _create(srv.api)
    # reencrypt refuses to run beside a live server (the data directory lock).
    r = _reencrypt(srv, keys)
    assert r.returncode != 0 and "in use" in r.stderr
    srv.stop()
    assert sorted(x[:8] for x in _attrs(srv)) == ["$sd1$k1$", "$sd1$k2$"], plain_era
    r = _reencrypt(srv, keys)
    assert r.returncode == 0, r.stderr
    assert "active sessions: 2 rows, 1 sealed under key 'k2'" in r.stdout, r.stdout
    assert "history: 1 rows, 1 sealed under key 'k2'" in r.stdout, r.stdout
    assert all(x.startswith("$sd1$k2$") for x in _attrs(srv) + _attrs(srv, "session_history"))
    # Drop k1: everything still reads.
    keys.write_text(keys.read_text().split("\n", 2)[0] + "\n" + keys.read_text().splitlines()[-1] + "\n")
    srv.start()
    for s in (old, new):
        assert srv.api.get_session(s["sessionId"]).json()["geoLocation"] == MARKERS["geoLocation"]
    srv.stop()


def test_unknown_key_or_altered_rows_fail_closed(make_server, tmp_path):
    keys = _keyfile(tmp_path / "enc.keys", "k1")
    srv = make_server("--encryption-keys", str(keys))
    s1, s2 = _create(srv.api), _create(srv.api)
    srv.stop()
    db = sqlite3.connect(srv.db_path)
    a1 = db.execute("SELECT attrs FROM sessions WHERE id=?", (s1["sessionId"],)).fetchone()[0]
    # s2 gets s1's sealed metadata: the session id is associated data, so it does not open.
    db.execute("UPDATE sessions SET attrs=? WHERE id=?", (a1, s2["sessionId"]))
    db.commit()
    db.close()
    srv.start()
    srv.api.get_session(s1["sessionId"], expect=200)
    r = srv.api.get_session(s2["sessionId"], expect=503)
    assert "cannot take the request" in r.json()["detail"]
    assert srv.api.validate(s2["token"])["isValid"] is True  # the hot path needs no metadata
    srv.stop()
    # A store sealed under k1 opened with another key: reads of metadata fail, nothing crashes.
    _keyfile(keys, "other")
    srv.start()
    srv.api.get_session(s1["sessionId"], expect=503)
    assert "cannot decrypt the metadata" in srv.log_text()
    srv.stop()


def test_bad_key_files_are_refused_at_start(make_server, tmp_path):
    for text, word in (("k1 abcd\n", "64 hex"), ("k1 " + "zz" * 32 + "\n", "64 hex"), ("# nothing\n", "no key"),
                       (f"k1 {'ab' * 32}\nk1 {'cd' * 32}\n", "twice"), (f"bad/id {'ab' * 32}\n", "key id")):
        p = tmp_path / "bad.keys"
        p.write_text(text)
        srv = make_server("--encryption-keys", str(p), start=False)
        r = subprocess.run(srv.command(), capture_output=True, text=True, env=child_env(), timeout=30,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 2 and word in r.stderr, (text, r.returncode, r.stderr)
        assert "ab" * 32 not in r.stderr, "a key reached the log"

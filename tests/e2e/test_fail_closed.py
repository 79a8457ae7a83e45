"""Fail closed when the random source fails (SECURITY.md item 2): with
getrandom() failing (an LD_PRELOAD shim), no session is created, nothing is
stored, and everything else keeps working."""
import os
import subprocess
from pathlib import Path

from conftest import db_query, new_user, record_token

SHIM = Path(__file__).parent / "shim" / "failrandom.c"


def test_no_session_without_randomness(make_server, tmp_path):
    so = tmp_path / "failrandom.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(so), str(SHIM), "-ldl"], check=True,
                   stdin=subprocess.DEVNULL, timeout=60)
    flag = tmp_path / "fail-now"
    env = {"LD_PRELOAD": str(so), "SD_FAIL_RANDOM_FILE": str(flag),
           # the sanitizer runtime wants to be first; the shim only wraps one libc call
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    srv = make_server(env=env)
    a = srv.api
    ok = a.create(new_user("rand"))
    record_token(ok["token"])
    count = lambda: db_query(srv.data_dir, "SELECT COUNT(*) FROM sessions")[0][0]  # noqa: E731
    before = count()
    flag.touch()
    try:
        r = a.post("/sessions", json={"userId": new_user("rand")}, expect=503)
        assert "random source failed" in r.json()["detail"]
        assert "token" not in r.text
        # A refresh mints a token too: it must fail the same way, leaving the old token valid.
        r = a.post(f"/sessions/{ok['sessionId']}/refresh", headers={"Authorization": f"Bearer {ok['token']}"},
                   expect=503)
        assert a.validate(ok["token"])["isValid"] is True
        assert count() == before, "a session was stored without a random token"
    finally:
        flag.unlink()
    a.create(new_user("rand"))  # and it recovers by itself
    assert "random source failed" in srv.log_text()


def test_an_fsync_error_is_fatal_for_the_store(make_server, tmp_path):
    """SECURITY.md item 35 (PostgreSQL's fsync lesson): after an fsync
    failure no write is acknowledged again until a restart, even once the
    disk works; reads keep working; what was acknowledged before survives."""
    so = tmp_path / "failsync.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(so), str(SHIM.parent / "failsync.c"), "-ldl"],
                   check=True, stdin=subprocess.DEVNULL, timeout=60)
    flag = tmp_path / "fail-sync"
    env = {"LD_PRELOAD": str(so), "SD_FAIL_SYNC_FILE": str(flag),
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    srv = make_server(env=env)
    a = srv.api
    before = a.create(new_user("sync"))
    record_token(before["token"])
    flag.touch()
    r = a.post("/sessions", json={"userId": new_user("sync")}, expect=503)
    assert "token" not in r.text
    flag.unlink()
    # The disk "works" again, but a failed fsync may have lost pages the
    # kernel reported as written: nothing more is acknowledged.
    for _ in range(3):
        a.post("/sessions", json={"userId": new_user("sync")}, expect=503)
    a.get("/readyz", expect=503)
    assert a.validate(before["token"], touch=False)["isValid"] is True
    assert "marked broken" in srv.log_text()
    # A restart recovers from the log; what was acknowledged is there.
    srv.stop()
    srv.start()
    assert a.validate(before["token"], touch=False)["isValid"] is True
    after = a.create(new_user("sync"))
    record_token(after["token"])
    a.get("/readyz", expect=200)

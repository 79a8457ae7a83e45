"""Online backup (issue #6): `sessiond backup DEST` under write load, then a
restore into a fresh data directory holds every session acknowledged before
the backup started."""
import shutil
import sqlite3
import subprocess
import threading
import time

from conftest import SESSIOND_BIN, child_env, new_user, record_token, wait_for


def _backup(data_dir, dest):
    return subprocess.run([SESSIOND_BIN, "backup", str(dest), "--data-dir", str(data_dir)], capture_output=True,
                          text=True, env=child_env(), timeout=120, stdin=subprocess.DEVNULL)


def test_backup_under_load_and_restore(make_server, tmp_path):
    srv = make_server()
    a = srv.api
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def writer():
        while not stop.is_set():
            s = a.create(new_user("bk"), data={"n": 1})
            record_token(s["token"])
            with lock:
                acked.append((time.monotonic(), s))

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) > 10, timeout=60, what="creates before the backup")
        t_start = time.monotonic()
        r = _backup(srv.data_dir, tmp_path / "bk")
        n = len(acked)
        wait_for(lambda: len(acked) > n + 3, timeout=60, what="creates during and after the backup")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert r.returncode == 0, r.stderr
    assert "backed up" in r.stdout
    before = [s for t, s in acked if t < t_start]
    assert len(before) > 10
    # A second backup into the same place is refused (never overwrites a copy).
    again = _backup(srv.data_dir, tmp_path / "bk")
    assert again.returncode == 1 and "already exists" in again.stderr
    srv.stop()
    # Restore: a fresh data directory with the copy as its store.
    fresh = tmp_path / "restored"
    fresh.mkdir()
    shutil.copy(tmp_path / "bk" / "sessiond.db", fresh / "sessiond.db")
    db = sqlite3.connect(fresh / "sessiond.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    restored = make_server(data_dir=fresh)
    for s in before:
        assert restored.api.validate(s["token"], touch=False)["isValid"] is True, s["sessionId"]
    assert restored.api.get_session(before[0]["sessionId"]).json()["data"] == {"n": 1}


def test_backup_errors_are_clear(tmp_path):
    r = _backup(tmp_path / "nothing-here", tmp_path / "bk")
    assert r.returncode == 1 and "no store" in r.stderr
    r = subprocess.run([SESSIOND_BIN, "backup"], capture_output=True, text=True, env=child_env(), timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "usage" in r.stderr

"""The PostgreSQL backend when PostgreSQL goes away: writes and reads answer
503 with Retry-After and /readyz says not ready while it is down; sessiond
reconnects by itself when it is back; nothing acknowledged is lost, even when
PostgreSQL crashes (immediate shutdown, crash recovery at restart) under a
write load. Each test starts its own private PostgreSQL 15 (pgserver.py), in
either mode of the suite."""
import signal
import threading

import pytest

import pgserver
from conftest import new_user, record_token, wait_for


@pytest.fixture
def pgs():
    try:
        p = pgserver.PgServer()
    except RuntimeError as e:
        pytest.skip(str(e))
    yield p
    p.close()


def _server(make_server, pgs, *args):
    pgs.psql("CREATE DATABASE outage")
    return make_server("--store", pgs.url("outage"), *args)


def _status(api, method, path, **kw):
    return api.request(method, path, **kw).status_code


def test_postgres_down_means_503_and_not_ready_then_service_resumes(pgs, make_server):
    srv = _server(make_server, pgs)
    api = srv.api
    user = new_user("pg")
    before = api.create(user)
    record_token(before["token"])
    api.get("/readyz", expect=200)
    assert "postgres" in srv.log_text() and "password" not in srv.log_text()

    pgs.stop()  # fast shutdown: every connection is closed
    wait_for(lambda: _status(api, "GET", "/readyz") == 503, timeout=20, what="/readyz 503 with postgres down")
    r = api.post("/sessions", json={"userId": user}, expect=503)
    assert r.headers.get("Retry-After"), "a 503 tells the client when to retry"
    assert "store" in r.json()["detail"]
    api.post("/sessions/validate", headers={"Authorization": f"Bearer {before['token']}"}, expect=503)
    api.get(f"/sessions/{before['sessionId']}", expect=503)
    api.delete(f"/sessions/{before['sessionId']}", expect=503)
    api.get("/healthz", expect=200)  # alive, only not ready
    assert "lost postgres" in srv.log_text()

    pgs.start()  # same port, same data
    wait_for(lambda: _status(api, "GET", "/readyz") == 200, timeout=30, what="/readyz 200 once postgres is back")
    assert api.validate(before["token"], touch=False)["isValid"] is True
    after = api.create(user)
    record_token(after["token"])
    listed = {s["sessionId"] for s in api.list_user(user).json()["sessions"]}
    assert listed == {before["sessionId"], after["sessionId"]}
    api.delete(f"/sessions/{before['sessionId']}", expect=204)
    assert api.validate(before["token"], touch=False)["isValid"] is False
    assert "connected to postgres" in srv.log_text()


def test_postgres_crash_under_write_load_loses_no_acknowledged_write(pgs, make_server):
    srv = _server(make_server, pgs, "--max-sessions-per-user", "0")
    api = srv.api
    user = new_user("crash")
    acked, statuses = [], []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            r = api.request("POST", "/sessions", json={"userId": user, "data": {"n": len(statuses)}})
            statuses.append(r.status_code)
            if r.status_code == 201:
                acked.append(r.json())

    workers = [threading.Thread(target=load) for _ in range(4)]
    for t in workers:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 50, timeout=30, what="some acknowledged creates")
        pgs.stop(signal.SIGQUIT)  # immediate shutdown: no checkpoint, crash recovery at start
        wait_for(lambda: statuses[-3:] == [503] * 3, timeout=20, what="503s while postgres is down")
        n_down = len(acked)
        pgs.start()
        wait_for(lambda: len(acked) >= n_down + 20, timeout=30, what="creates acknowledged again")
    finally:
        stop.set()
        for t in workers:
            t.join()
    for s in acked:
        record_token(s["token"])
    assert set(statuses) <= {201, 503}, f"only 201 or 503: {sorted(set(statuses))}"
    # Every acknowledged create survived the crash (the per-user limit is off).
    for s in acked:
        assert api.validate(s["token"], touch=False)["isValid"] is True, f"acknowledged {s['sessionId']} lost"
    n = pgs.query_db("outage", "SELECT count(*) FROM sessions")[0][0]
    assert n >= len(acked)


def test_each_replica_logs_the_events_its_own_writer_committed(pgs, make_server):
    """Two replicas on one database: every lifecycle event reaches exactly
    one audit log, the writing replica's (a per-replica feed: seqs from two
    writers interleave, so one cursor over both could skip events); the
    events endpoints still see everything. A replica keeps its id (and its
    feed) across a restart."""
    import json
    pgs.psql("CREATE DATABASE shared")
    a = make_server("--store", pgs.url("shared"))
    b = make_server("--store", pgs.url("shared"))
    user = new_user("pg")
    made = {a: [], b: []}
    for _ in range(5):
        for srv in (a, b):
            s = srv.api.create(user)
            record_token(s["token"])
            made[srv].append(s["sessionId"])
    a.restart()  # same data dir, same replica id
    s = a.api.create(user)
    record_token(s["token"])
    made[a].append(s["sessionId"])

    def logged(srv):
        path = srv.data_dir / "audit" / "audit.log"
        recs = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        return [r["sessionId"] for r in recs if r["event"] == "created"]
    for srv in (a, b):
        wait_for(lambda: sorted(logged(srv)) == sorted(made[srv]), timeout=10,
                 what="each replica's audit log to hold exactly its own creates")
    everything = b.api.get(f"/users/{user}/events", params={"limit": 100}, expect=200).json()["events"]
    assert sorted(e["sessionId"] for e in everything if e["event"] == "created") == sorted(made[a] + made[b])

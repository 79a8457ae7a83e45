"""The PostgreSQL backend when PostgreSQL goes away: writes and reads answer
503 with Retry-After and /readyz says not ready while it is down; sessiond
reconnects by itself when it is back; nothing acknowledged is lost, even when
PostgreSQL crashes (immediate shutdown, crash recovery at restart) under a
write load. Each test starts its own private PostgreSQL 15 (pgserver.py), in
either mode of the suite."""
import re
import signal
import threading

import pytest

import pgserver
from conftest import audit_log_records, creates_with_a_refused_user, new_user, record_token, wait_for


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
        recs = audit_log_records(srv)
        return [r["sessionId"] for r in recs if r["event"] == "created"]
    for srv in (a, b):
        wait_for(lambda: sorted(logged(srv)) == sorted(made[srv]), timeout=10,
                 what="each replica's audit log to hold exactly its own creates")
    everything = b.api.get(f"/users/{user}/events", params={"limit": 100}, expect=200).json()["events"]
    assert sorted(e["sessionId"] for e in everything if e["event"] == "created") == sorted(made[a] + made[b])


def _hold_table_lock(pgs, db, table):
    """A psql session holding ACCESS EXCLUSIVE on table until released: every
    read of it waits in PostgreSQL meanwhile."""
    import subprocess
    p = subprocess.Popen([pgserver.PSQL, "-h", "127.0.0.1", "-p", str(pgs.port), "-U", "postgres",
                          "-d", db, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "locked", p.stderr.read()
    return p


def _release(p):
    p.stdin.write("ROLLBACK;\n")
    p.stdin.close()
    p.wait(timeout=30)


@pytest.mark.parametrize("pool", ["4", "0"])
def test_a_database_read_that_waits_does_not_stall_the_http_thread(pgs, make_server, pool):
    """One HTTP thread; validations whose reads wait in PostgreSQL (the table
    is locked) - more of them than there are handler threads. With the
    handler pool the HTTP thread goes on serving other connections (the
    liveness probe answers); with --handler-threads 0 (the blocking design,
    kept as the control that shows this test can fail) it does not, until
    the database answers. Either way the waiting validations succeed once
    the lock is gone."""
    import requests
    srv = _server(make_server, pgs, "--threads", "1", "--handler-threads", pool)
    s = srv.api.create(new_user("pg"))
    record_token(s["token"])
    locker = _hold_table_lock(pgs, "outage", "sessions")
    codes = []

    def validate():
        r = srv.api.post("/sessions/validate", headers={"Authorization": f"Bearer {s['token']}"},
                         timeout=60)
        codes.append((r.status_code, r.json().get("isValid")))
    ts = [threading.Thread(target=validate) for _ in range(6)]
    try:
        for t in ts:
            t.start()
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sessiond' "
                   "AND wait_event_type = 'Lock'")
        wait_for(lambda: int(pgs.psql(waiting).strip()) >= 1, timeout=20,
                 what="a sessiond read waiting on the lock")
        try:
            live = requests.get(srv.direct_url + "/healthz", timeout=3).status_code
        except requests.exceptions.Timeout:
            live = None
    finally:
        _release(locker)
    for t in ts:
        t.join(timeout=60)
    assert codes == [(200, True)] * 6
    if pool == "0":
        assert live is None, "the control: a blocking read holds the only HTTP thread"
    else:
        assert live == 200, "the HTTP thread answered while handlers waited on the database"


def _metric(api, name):
    m = re.search(rf"^{name} (\d+)$", api.get("/metrics").text, re.M)
    return int(m.group(1)) if m else None


def test_a_batch_of_updates_reads_its_rows_ahead_and_each_sees_the_writes_before_it(pgs, make_server):
    """A pipelined batch of read-modify-writes reads the rows its writes
    will select first, all in one round trip under their row locks
    (store/postgres_rows.c, read_ahead), instead of a round trip per write;
    a write whose row an earlier write of the batch changed still reads it
    afresh. The batch is made without timing: a psql transaction holds one
    session's row lock, so the writer waits in an update of it while the
    other updates queue (the queue gauge says when all have); once the lock
    is released, the queued writes run as one batch."""
    srv = _server(make_server, pgs, "--sweep-interval", "1h")  # no sweep in the batch
    api = srv.api
    user = new_user("pg")
    blocker, twice = api.create(user), api.create(user)
    others = [api.create(user) for _ in range(6)]
    for s in [blocker, twice] + others:
        record_token(s["token"])
    holder = pgs.session("outage")
    answers = {}

    def put(name, sid, data, if_match=None):
        headers = {"If-Match": if_match} if if_match else {}
        answers[name] = api.request("PUT", f"/sessions/{sid}", json={"data": data}, headers=headers,
                                    timeout=120)
    try:
        holder.stdin.write(f"BEGIN; SELECT id FROM sessions WHERE id = '{blocker['sessionId']}' FOR UPDATE;\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == blocker["sessionId"]  # the lock is held
        first = threading.Thread(target=put, args=("blocker", blocker["sessionId"], {"b": 1}))
        first.start()
        wait_for(lambda: pgs.query_db("outage", "SELECT count(*) FROM pg_stat_activity "
                                      "WHERE wait_event_type = 'Lock'")[0][0] >= 1,
                 timeout=30, what="the writer waiting for the row lock")
        calls = [(f"o{i}", s["sessionId"], {"n": i}, '"1"') for i, s in enumerate(others)]
        calls += [(f"twice{i}", twice["sessionId"], {"t": i}, '"1"') for i in range(2)]
        threads = [threading.Thread(target=put, args=c) for c in calls]
        for t in threads:
            t.start()
        wait_for(lambda: _metric(api, "sessiond_store_writes_queued") >= len(calls), timeout=30,
                 what="the updates queued behind the locked one")
        ahead0 = _metric(api, "sessiond_store_rows_read_ahead_total")
        holder.stdin.write("COMMIT;\n")
        holder.stdin.close()
        holder.wait(timeout=30)
        for t in [first] + threads:
            t.join(timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert answers.pop("blocker").status_code == 200
    for i, s in enumerate(others):
        r = answers.pop(f"o{i}")
        assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["data"] == {"n": i}, r.text
    # One If-Match race inside the batch: the second update of `twice` reads
    # the row the first wrote (its read ahead was the first's alone).
    codes = sorted(answers[f"twice{i}"].status_code for i in range(2))
    assert codes == [200, 412], {n: r.text for n, r in answers.items()}
    assert api.get_session(twice["sessionId"]).json()["version"] == 2
    # Seven rows read ahead (six sessions and `twice`), each answering one select.
    assert _metric(api, "sessiond_store_rows_read_ahead_total") - ahead0 == 7
    assert _metric(api, "sessiond_store_writes_queued") == 0


def test_with_write_hold_writes_sent_while_postgres_is_down_are_answered_once_it_is_back(pgs, make_server):
    """--write-hold: a write that finds the database unreachable (a primary's
    failover) waits for it instead of answering 503 at once, and is answered
    once it committed there: creates and a delete, each acknowledged only
    after it is durable. Reads are not held (503); an update needs the
    global not-before, which only the database knows (with --store-standby
    its standby), so here it is held or refused. The
    hold (120 s) is far longer than the outage the test makes; it only bounds
    the test if PostgreSQL never comes back."""
    srv = _server(make_server, pgs, "--write-hold", "120s")
    api = srv.api
    user = new_user("pg")
    kept, gone = api.create(user), api.create(user)
    for s in (kept, gone):
        record_token(s["token"])
    pgs.stop()
    wait_for(lambda: _status(api, "GET", "/readyz") == 503, timeout=20, what="/readyz 503 with postgres down")
    api.get(f"/sessions/{kept['sessionId']}", expect=503)  # reads are not held
    answers = {}

    def send(name, method, path, **kw):
        answers[name] = api.request(method, path, timeout=180, **kw)
    # The update needs the global not-before: while the last read of it is
    # fresh (250 ms) it is held like the others, after that it answers 503
    # at once (no --store-standby here); either is right, nothing else.
    upd = threading.Thread(target=send, args=("update", "PUT", f"/sessions/{kept['sessionId']}"),
                           kwargs={"json": {"data": {"held": True}}})
    calls = [("create1", "POST", "/sessions", {"json": {"userId": user}}),
             ("create2", "POST", "/sessions", {"json": {"userId": user}}),
             ("delete", "DELETE", f"/sessions/{gone['sessionId']}", {})]
    held0 = _metric(api, "sessiond_store_writes_held_total")
    threads = [threading.Thread(target=send, args=(n, m, p), kwargs=kw) for n, m, p, kw in calls]
    for t in threads:
        t.start()
    wait_for(lambda: _metric(api, "sessiond_store_writes_held_total") >= held0 + len(calls), timeout=30,
             what="the three writes held")
    assert not answers, f"answered while the database was down: {answers}"
    upd.start()
    upd.join(timeout=2)
    pgs.start()
    for t in threads + [upd]:
        t.join(timeout=150)
    assert answers.pop("update").status_code in (200, 503)
    codes = {n: r.status_code for n, r in answers.items()}
    assert codes == {"create1": 201, "create2": 201, "delete": 204}, \
        {n: r.text for n, r in answers.items()}
    for n in ("create1", "create2"):
        record_token(answers[n].json()["token"])
        assert api.validate(answers[n].json()["token"], touch=False)["isValid"] is True
    assert api.validate(gone["token"], touch=False)["isValid"] is False
    rows = pgs.query_db("outage", "SELECT count(*) FROM sessions WHERE user_id = ?", (user,))
    assert rows[0][0] == 3  # kept and the two creates
    assert _metric(api, "sessiond_store_write_holds_expired_total") == 0


def test_a_held_write_answers_503_when_its_hold_ends(pgs, make_server):
    srv = _server(make_server, pgs, "--write-hold", "1s")
    api = srv.api
    user = new_user("pg")
    api.create(user)
    pgs.stop()
    wait_for(lambda: _status(api, "GET", "/readyz") == 503, timeout=20, what="/readyz 503 with postgres down")
    r = api.post("/sessions", json={"userId": user}, expect=503)
    assert r.headers.get("Retry-After") and "store" in r.json()["detail"]
    assert _metric(api, "sessiond_store_write_holds_expired_total") >= 1
    pgs.start()
    wait_for(lambda: _status(api, "GET", "/readyz") == 200, timeout=30, what="ready again")
    record_token(api.create(user)["token"])


def test_sigterm_answers_the_held_writes_and_stops_cleanly(pgs, make_server):
    """A write held for an unreachable database does not keep a stopping
    server waiting for its hold: SIGTERM answers it 503 and the server exits
    0 well within --shutdown-timeout (here longer than the test's wait)."""
    srv = _server(make_server, pgs, "--write-hold", "120s", "--shutdown-timeout", "60s")
    api = srv.api
    user = new_user("pg")
    api.create(user)
    pgs.stop()
    wait_for(lambda: _status(api, "GET", "/readyz") == 503, timeout=20, what="/readyz 503 with postgres down")
    answers = []
    t = threading.Thread(target=lambda: answers.append(
        api.request("POST", "/sessions", json={"userId": user}, timeout=180)))
    t.start()
    wait_for(lambda: _metric(api, "sessiond_store_writes_held_total") >= 1, timeout=30, what="the create held")
    srv.stop()  # SIGTERM; asserts exit 0
    t.join(timeout=60)
    assert [r.status_code for r in answers] == [503]
    assert "stopped" in srv.log_text()


def test_starts_while_postgres_is_unreachable_and_migrates_once_it_is_back(pgs, make_server):
    """A replica (re)started during a database outage (a failover, a
    database still booting) does not exit: it serves 503 with Retry-After
    and is not ready, then creates its schema and serves by itself once
    PostgreSQL answers - no restart, no crash loop. The database is new, so
    the schema is created only after the start."""
    pgs.psql("CREATE DATABASE late")
    pgs.stop()
    srv = make_server("--store", pgs.url("late"))
    api = srv.api
    user = new_user("pg")
    api.get("/healthz", expect=200)
    api.get("/readyz", expect=503)
    r = api.post("/sessions", json={"userId": user}, expect=503)
    assert r.headers.get("Retry-After")
    api.post("/sessions/validate", headers={"Authorization": "Bearer " + "x" * 43}, expect=503)
    assert "cannot connect to postgres" in srv.log_text()
    assert "password" not in srv.log_text()

    pgs.start()
    wait_for(lambda: _status(api, "GET", "/readyz") == 200, timeout=30,
             what="/readyz 200 once postgres answers")
    s = api.create(user)
    record_token(s["token"])
    assert api.validate(s["token"], touch=False)["isValid"] is True
    assert pgs.query_db("late", "SELECT count(*) FROM sessions")[0][0] == 1
    assert "schema migrated" in srv.log_text()


def test_a_write_the_database_refuses_fails_alone_in_its_batch(pgs, make_server):
    """Group commit shares one transaction among concurrent writes, each
    behind a savepoint: a write PostgreSQL refuses (here a CHECK constraint
    the test adds) answers 503 and is rolled back alone; the writes around
    it in the same batch commit, and later batches reuse the savepoint."""
    srv = _server(make_server, pgs)
    srv.api.create(new_user("pg"))  # the schema exists
    pgs.query_db("outage", "ALTER TABLE sessions ADD CONSTRAINT refuse_one CHECK (user_id <> 'refused')")
    users = creates_with_a_refused_user(srv, "pg")
    stored = {r[0] for r in pgs.query_db("outage", "SELECT user_id FROM sessions")}
    assert "refused" not in stored
    assert {u for u in users if u != "refused"} <= stored
    events = pgs.query_db("outage", "SELECT count(*) FROM audit_events WHERE user_id = 'refused'")
    assert events[0][0] == 0, "a rolled-back create leaves no event"
    # The batches are pipelined (store/postgres_pipe.c): a refusal is found
    # only when the batch's results are read, and the batch then runs again
    # one statement at a time, where the refused write fails alone.
    text = srv.api.get("/metrics", expect=200).text
    m = re.search(r"^sessiond_store_batch_retries_total (\d+)$", text, re.M)
    assert m and int(m.group(1)) >= 1, "no pipelined batch was run again"


def test_check_connect_reaches_postgres_and_redis_changing_nothing(pgs, make_server, tmp_path):
    """`sessiond check --connect`: the database a start would use, its schema
    version against this binary's, a standby or a role that could not create
    the schema refused; the Redis cache reached and checked to be a master."""
    import redisserver
    from test_config import _run
    pgs.psql("CREATE DATABASE probe")
    url = pgs.url("probe")
    data = tmp_path / "d"

    def check(*args):
        return _run(["check", "--connect", "--data-dir", str(data), *args], tmp_path)
    rc, out, err = check("--store", url)
    assert rc == 0 and "primary, schema version 0 (a start creates it, version" in out, (rc, out, err)
    assert pgs.psql("SELECT to_regclass('sessions') IS NULL").strip() == "t", "check must create nothing"
    srv = make_server("--store", url)
    srv.api.create(new_user("probe"))
    rc, out, err = check("--store", url)
    assert rc == 0 and re.search(r"primary, schema version \d+$", out.strip().splitlines()[-1]), (rc, out, err)
    # A database a newer sessiond migrated.
    pgs.psql("INSERT INTO sessiond_schema_migrations(version, description) VALUES (999, 'from the future')",
             db="probe")
    rc, out, err = check("--store", url)
    assert rc == 2 and "schema version 999, newer than this sessiond knows" in err, (rc, out, err)
    # A role that may not create in the schema, on a database not yet made.
    pgs.psql("CREATE DATABASE fresh")
    pgs.psql("CREATE ROLE app LOGIN")
    pgs.psql("REVOKE CREATE ON SCHEMA public FROM PUBLIC", db="fresh")
    rc, out, err = check("--store", pgs.url("fresh").replace("//postgres@", "//app@"))
    assert rc == 2 and "may not create in schema public" in err, (rc, out, err)
    # A standby: read-only, a start could not write.
    sb = pgserver.PgServer(standby_of=pgs)
    try:
        rc, out, err = check("--store", sb.url("probe"))
        assert rc == 2 and "is a standby, read-only" in err, (rc, out, err)
    finally:
        sb.close()
    # Nobody listening.
    rc, out, err = check("--store", "postgresql://postgres@127.0.0.1:1/x?connect_timeout=2")
    assert rc == 2 and "cannot connect to postgres (host=127.0.0.1 port=1" in err, (rc, out, err)

    # The Redis cache: a master; a replica (read-only) refused; nobody there.
    master = redisserver.RedisServer(password="s3cret-pw")
    replica = redisserver.RedisServer(extra=["--replicaof", "127.0.0.1", str(master.port),
                                             "--masterauth", "s3cret-pw"])
    try:
        rc, out, err = check("--store", pgs.url("fresh"), "--cache", f"redis://:s3cret-pw@127.0.0.1:{master.port}/3",
                             "--cache-timeout", "2s")
        assert rc == 0 and f"cache redis 127.0.0.1:{master.port}/3: a master" in out, (rc, out, err)
        assert "s3cret" not in out + err
        rc, out, err = check("--store", pgs.url("fresh"), "--cache", f"redis://127.0.0.1:{master.port}/0",
                             "--cache-timeout", "2s")
        assert rc == 2 and "PING: NOAUTH" in err, (rc, out, err)
        rc, out, err = check("--store", pgs.url("fresh"), "--cache", f"redis://127.0.0.1:{replica.port}",
                             "--cache-timeout", "2s")
        assert rc == 2 and f"127.0.0.1:{replica.port} is not a master (slave)" in err, (rc, out, err)
        rc, out, err = check("--store", pgs.url("fresh"), "--cache", "redis://127.0.0.1:1", "--cache-timeout", "2s")
        assert rc == 2 and "the Redis cache (127.0.0.1): connect:" in err, (rc, out, err)
    finally:
        replica.close()
        master.close()

"""Failover: a primary PostgreSQL with a synchronous streaming standby, the
primary crashes under a create load, the standby is promoted, and sessiond
(given both hosts and target_session_attrs=read-write) finds the new primary
by itself.

The standby is a pg_basebackup -R of the primary; the primary then sets
synchronous_standby_names, so (with synchronous_commit=on) a COMMIT returns
only once the standby has flushed it, and sessiond acknowledges a write only
after its COMMIT returned. The crash is a SIGKILL of the postmaster and every
backend. While no primary is reachable, writes answer 503 with Retry-After;
after the promotion, writes succeed again without anyone touching sessiond,
and every create acknowledged before, during or after the failover validates
on the new primary. Runs in either mode of the suite (own PostgreSQL pair).
"""
import threading

import pytest

import pgserver
from conftest import new_user, record_token, wait_for


@pytest.fixture
def pair():
    made = []
    try:
        primary = pgserver.PgServer()
        made.append(primary)
        primary.psql("CREATE DATABASE failover")
        standby = pgserver.PgServer(standby_of=primary)
        made.append(standby)
    except RuntimeError as e:
        for p in made:
            p.close()
        pytest.skip(str(e))
    try:
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.psql("SELECT pg_reload_conf()")
        wait_for(lambda: primary.psql("SELECT sync_state FROM pg_stat_replication").split() == ["sync"],
                 timeout=30, what="the standby to stream synchronously")
        assert standby.psql("SELECT pg_is_in_recovery()").strip() == "t"
        yield primary, standby
    finally:
        for p in made:
            p.close()


def test_primary_crash_and_promotion_under_load_loses_no_acknowledged_write(pair, make_server):
    primary, standby = pair
    url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/failover"
           "?target_session_attrs=read-write")
    srv = make_server("--store", url, "--max-sessions-per-user", "0")
    api = srv.api
    user = new_user("failover")
    acked, statuses, retry_after = [], [], []
    lock = threading.Lock()
    stop = threading.Event()

    def load():
        while not stop.is_set():
            r = api.request("POST", "/sessions", json={"userId": user})
            with lock:
                statuses.append(r.status_code)
                if r.status_code == 201:
                    acked.append(r.json())
                elif r.status_code == 503:
                    retry_after.append(r.headers.get("Retry-After"))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for t in workers:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 50, timeout=60, what="creates acknowledged by the primary")
        primary.crash()
        wait_for(lambda: statuses[-3:] == [503] * 3, timeout=30, what="503s while no primary is reachable")
        assert api.request("GET", "/readyz").status_code == 503
        n_down = len(acked)
        standby.promote()
        # Nobody touches sessiond: it reconnects (backoff) and libpq finds the
        # read-write host among the two.
        wait_for(lambda: len(acked) >= n_down + 50, timeout=60, what="creates acknowledged after the promotion")
    finally:
        stop.set()
        for t in workers:
            t.join()
    for s in acked:
        record_token(s["token"])
    assert set(statuses) <= {201, 503}, f"only 201 or 503: {sorted(set(statuses))}"
    assert retry_after and all(v and v.isdigit() for v in retry_after), "every 503 carries Retry-After"
    api.get("/readyz", expect=200)
    for s in acked:
        assert api.validate(s["token"], touch=False)["isValid"] is True, f"acknowledged {s['sessionId']} lost"
    n = int(standby.psql("SELECT count(*) FROM sessions", db="failover"))
    assert n >= len(acked)
    assert standby.psql("SELECT pg_is_in_recovery()").strip() == "f"
    log = srv.log_text()
    assert "lost postgres" in log and "connected to postgres" in log and "password" not in log

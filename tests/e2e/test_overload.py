"""Load shedding: past --max-queued-writes, writes answer 503 with
Retry-After at once instead of queueing without bound; nothing acknowledged
is lost, and the server serves normally afterwards. Slowloris: thousands of
trickling connections do not starve normal clients."""
import os
import socket
import threading
import time

from conftest import new_user, record_token


def test_writes_beyond_the_queue_limit_get_503_and_nothing_acked_is_lost(make_server):
    # No per-user limit: every acknowledged create must stay (the limit would
    # evict the oldest of this user's 480 sessions).
    srv = make_server("--max-queued-writes", "2", "--commit-batch", "1", "--max-sessions-per-user", "0")
    user = new_user()
    results = []
    lock = threading.Lock()

    def worker():
        api = srv.api
        for _ in range(15):
            r = api.post("/sessions", json={"userId": user})
            with lock:
                results.append((r.status_code, r.headers.get("Retry-After"),
                                r.json().get("sessionId") if r.status_code == 201 else None))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = {s for s, _, _ in results}
    assert statuses <= {201, 503}, f"unexpected statuses {statuses}"
    shed = [r for r in results if r[0] == 503]
    acked = [sid for s, _, sid in results if s == 201]
    assert acked, "no create succeeded at all"
    assert shed, ("32 concurrent writers against a queue of 2 with one write per commit shed "
                  "nothing: the limit is not enforced")
    assert all(ra == "1" for _, ra, _ in shed), "503 must carry Retry-After"
    # Every acknowledged session exists, after a restart too.
    srv.restart()
    for sid in acked:
        srv.api.get_session(sid, expect=200)
    assert srv.api.get("/readyz").status_code == 200
    srv.api.create(user)


def test_a_slowloris_flood_does_not_starve_normal_clients(make_server):
    """Issue #6: 2000 connections trickle a request head one byte at a time
    (from 8 loopback addresses, under the per-address cap) while normal
    clients create and validate sessions: every normal request is answered
    correctly, and the request timeout then closes the tricklers. The latency
    normal clients saw is printed, not asserted (timing bounds belong in
    make bench); the bound asserted is only that none waited 5 s."""
    srv = make_server("--max-connections", "4096", "--max-connections-per-ip", "512")
    attackers = []
    for i in range(2000):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10, source_address=(f"127.0.0.{2 + i % 8}", 0))
        s.sendall(b"POST /sessions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        attackers.append(s)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            for s in attackers:
                try:
                    s.send(b"a")
                except OSError:
                    pass
            stop.wait(0.5)

    t = threading.Thread(target=trickle)
    t.start()
    lat = []
    try:
        for _ in range(150):
            t0 = time.monotonic()
            s = srv.api.post("/sessions", json={"userId": new_user("calm")}, expect=201, timeout=5).json()
            record_token(s["token"])
            assert srv.api.validate(s["token"])["isValid"] is True
            lat.append(time.monotonic() - t0)
    finally:
        stop.set()
        t.join()
    lat.sort()
    print(f"normal clients under 2000 trickling connections: p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
          f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms (create + validate)")
    # The tricklers never finish a request: the 10 s request timeout closes them.
    deadline = time.monotonic() + 20
    closed = 0
    for s in attackers:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = s.recv(4096)
            closed += 1 if data == b"" or data.startswith(b"HTTP/1.1 408") else 0
        except OSError:
            pass
        s.close()
    assert closed >= 1990, f"only {closed} of 2000 trickling connections were closed by the request timeout"
    srv.api.get("/healthz", expect=200)


def test_running_out_of_descriptors_refuses_connections_without_spinning(tmp_path):
    """With its descriptor limit exhausted by idle connections, sessiond
    refuses further connections (accepts and closes them with a spare
    descriptor) instead of spinning on a listener that stays readable, and
    serves again once connections close."""
    import resource
    import subprocess

    import requests

    from conftest import SESSIOND_BIN, child_env, free_port

    port = free_port()

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    err = open(tmp_path / "stderr.log", "wb")
    p = subprocess.Popen([SESSIOND_BIN, "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "d")],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=child_env(),
                         preexec_fn=limit)
    held = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and p.poll() is None, "sessiond did not start"
                time.sleep(0.05)
        for _ in range(100):  # more than the limit allows
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)

        def cpu():
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        c0 = cpu()
        time.sleep(2)
        used = cpu() - c0
        assert used < 1.0, f"sessiond used {used:.2f} s of CPU in 2 s while out of descriptors (spinning?)"
        for s in held:
            s.close()
        held.clear()
        ok = False
        for _ in range(100):
            try:
                ok = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                pass
            if ok:
                break
            time.sleep(0.1)
        assert ok, "sessiond did not serve again after descriptors were freed"
    finally:
        for s in held:
            s.close()
        p.terminate()
        assert p.wait(timeout=20) == 0
        err.close()
    assert "out of file descriptors" in (tmp_path / "stderr.log").read_text()

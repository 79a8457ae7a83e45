"""The load and the checks of make chaos (bench/chaos.py) and of
tests/e2e/test_chaos.py: a steady mixed load of the design article's shape
through the front haproxy, a checker that validates every revoked token
through every replica, and the verdict.

The load: `workers` clients, each with its own sessions, sending at a
fixed total rate, open loop: a slot is sent when due on a keep-alive
connection of its own, whatever is still in flight (so a request that
waits, such as a write held through a database failover, delays nothing
else); a slot that cannot be sent (the client more than a second behind,
or max_inflight requests already in flight) is counted and counts as a
failure in the availability. No two writes race on one session. The mix (per 100 requests): 78
validations by token (the article's 40 retrieves and 40 validations are
both reads of a session), 10 creates, 8 deletes, 4 updates with If-Match
(the article's 10 : 10 : 2 for creates, deletes and updates). Each
request's send time, answer time and outcome are kept; every request has a
timeout, and the whole run is bounded in time and in count.

What is acknowledged is tracked per session: a create answered 201, an
update answered 200 (its version and its data), a delete answered 204. A
write whose outcome is unknown (503, 502, a timeout, a reset) is remembered
as an attempt: an update's session is read back (GET, counted as a `get`)
before it is updated again; a delete is sent again later (204 or 404 then
says it is gone). Nothing here retries a request to make it succeed.

Lost writes (`lost`): afterwards every session whose create was
acknowledged and that was not deleted is read back through the front and
must be found with its last acknowledged version and data (or those of an
attempt made after it), and its token must validate. Revoked sessions that
validated (`revoked_valid`): every token whose DELETE returned 204 (or a
404 for a delete sent again) is validated, without touching it, through
every replica directly: at once, then over and over while the load runs,
and once more through every replica at the end. Both numbers must be zero.
"""

import http.client
import json
import queue
import random
import threading
import time

MIX = (("validate", 78), ("create", 10), ("delete", 8), ("update", 4))
WRITES = ("create", "update", "delete")
OK = {"validate": 200, "create": 201, "update": 200, "delete": 204, "get": 200}


class Http:
    """One keep-alive connection to host:port; request() returns (status,
    body) or (reason, None) for a timeout or a connection error, after
    which the next request opens a new connection."""

    # A connection idle longer than this is not reused: haproxy closes an
    # idle keep-alive connection after `timeout http-request` (10 s in
    # deploy/haproxy/sessiond.cfg), and a request written to a connection it
    # has just closed fails without reaching anyone. Pools do the same.
    MAX_IDLE_S = 5.0

    def __init__(self, port, timeout):
        self.port, self.timeout, self.conn = port, timeout, None
        self.last_used = 0.0

    def request(self, method, path, body=None, headers=None):
        if self.conn is not None and time.monotonic() - self.last_used > self.MAX_IDLE_S:
            self.close()
        try:
            return self._request(method, path, body, headers)
        finally:
            self.last_used = time.monotonic()

    def _request(self, method, path, body=None, headers=None):
        hdrs = dict(headers or {})
        if body is not None:
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request(method, path, body=body, headers=hdrs)
            r = self.conn.getresponse()
            data = r.read()
            if r.getheader("Connection", "").lower() == "close":
                self.close()
            return r.status, data
        except TimeoutError:
            self.close()
            return "timeout", None
        except (OSError, http.client.HTTPException):
            self.close()
            return "conn-error", None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def is_valid(status, body):
    return status == 200 and b'"isValid":true' in body


class Session:
    __slots__ = ("sid", "token", "version", "n", "attempts", "maybe_deleted")

    def __init__(self, sid, token, version):
        self.sid, self.token, self.version, self.n = sid, token, version, 0
        self.attempts = []            # (version, n) of updates of unknown outcome since the last known state
        self.maybe_deleted = False    # a DELETE of unknown outcome was sent


class Revocations:
    """Every revoked token (with the monotonic time its DELETE returned)
    and the checker threads that validate them through every replica
    directly. A validation answered isValid:true is a violation."""

    def __init__(self, replica_ports, rate, timeout):
        self.ports = replica_ports
        self.rate = rate
        self.timeout = timeout
        self.tokens = []              # (sid, token, t_revoked)
        self.fresh = queue.Queue()
        self.lock = threading.Lock()
        self.violations = []          # (sid, replica port, seconds after the DELETE returned)
        self.checks = self.answered = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(2)]

    def add(self, sid, token):
        item = (sid, token, time.monotonic())
        with self.lock:
            self.tokens.append(item)
        self.fresh.put(item)

    def start(self):
        for t in self.threads:
            t.start()

    def check(self, conns, item, port):
        sid, token, t_revoked = item
        status, body = conns[port].request("POST", "/sessions/validate?touch=false",
                                           headers={"Authorization": f"Bearer {token}"})
        with self.lock:
            self.checks += 1
            if status == 200:
                self.answered += 1
            if is_valid(status, body):
                self.violations.append((sid, port, round(time.monotonic() - t_revoked, 3)))
        return status == 200

    def _run(self, idx):
        conns = {p: Http(p, self.timeout) for p in self.ports}
        interval = len(self.threads) / self.rate
        nxt, cursor, rng = time.monotonic(), 0, random.Random(idx)
        while not self.stop.is_set():
            try:
                item = self.fresh.get_nowait()
                todo = [(item, p) for p in self.ports]   # a new revocation: every replica at once
            except queue.Empty:
                with self.lock:
                    n = len(self.tokens)
                    item = self.tokens[(cursor * 2 + idx) % n] if n else None
                cursor += 1
                todo = [(item, rng.choice(self.ports))] if item else []
            for item, port in todo:
                self.check(conns, item, port)
                nxt = max(nxt + interval, time.monotonic() - 1)
                delay = nxt - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
            if not todo:
                self.stop.wait(0.05)
        for c in conns.values():
            c.close()

    def finish(self, deadline_s=600, threads=4):
        """Stops the checkers, then validates every revoked token through
        every replica once more, each until a replica answers 200 (bounded
        by deadline_s). Returns the number that no replica answered."""
        self.stop.set()
        for t in self.threads:
            t.join()
        with self.lock:
            work = [(item, p) for item in self.tokens for p in self.ports]
        deadline = time.monotonic() + deadline_s
        unanswered = []
        lock = threading.Lock()

        def run():
            conns = {p: Http(p, self.timeout) for p in self.ports}
            while True:
                with lock:
                    if not work:
                        break
                    item, port = work.pop()
                while not self.check(conns, item, port):
                    if time.monotonic() > deadline:
                        with lock:
                            unanswered.append((item[0], port))
                        break
                    time.sleep(0.2)
        ts = [threading.Thread(target=run) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return unanswered


class Worker(threading.Thread):
    """One client: its own sessions and a share of the total rate, until
    stop_at (monotonic). Open loop: each slot is sent when due on a
    connection of its own (kept alive and reused), whatever is still in
    flight, up to max_inflight requests at once; a slot due while that many
    are in flight, or more than a second late, is not sent and is counted
    (`skipped`). A session with a write in flight is not picked for another
    write nor, while its DELETE is in flight, for a validation."""

    def __init__(self, idx, port, rate, stop_at, revocations, results, timeout, seed, max_requests,
                 max_inflight=32):
        super().__init__(daemon=True)
        self.idx, self.rate, self.stop_at = idx, rate, stop_at
        self.port, self.timeout = port, timeout
        self.rev, self.results = revocations, results
        self.rng = random.Random(seed * 1000 + idx)
        self.lock = threading.Lock()
        self.sessions = {}        # sid -> Session, created and not (surely) deleted
        self.gone = []            # sessions with a DELETE of unknown outcome still to resolve
        self.vanished = []        # live sessions a DELETE found missing (404)
        self.busy = set()         # sids with a write in flight
        self.deleting = set()     # sids with a DELETE in flight
        self.idle = []            # Http connections not in use
        self.inflight = 0
        self.max_inflight = max_inflight
        self.tasks = []
        self.users = 0
        self.skipped = 0
        self.max_requests = max_requests
        self.sent = 0
        self.halt = threading.Event()

    def _conn(self):
        with self.lock:
            return self.idle.pop() if self.idle else Http(self.port, self.timeout)

    def send(self, http, kind, method, path, body=None, headers=None):
        t0 = time.monotonic()
        status, data = http.request(method, path, body, headers)
        t1 = time.monotonic()
        ok = is_valid(status, data) if kind == "validate" else status == OK[kind]
        label = status if ok or kind != "validate" or status != 200 else "200 isValid:false"
        self.results.append((kind, t0, t1, ok, label))
        return status, data

    def create(self, record=True, http=None):
        with self.lock:
            self.users += 1
            body = {"userId": f"chaos-{self.idx}-{self.users}", "data": {"n": 0}}
        own = http is None
        http = http or Http(self.port, self.timeout)
        if record:
            status, data = self.send(http, "create", "POST", "/sessions", body)
        else:
            status, data = http.request("POST", "/sessions", body)
        if own:
            http.close()
        if status == 201:
            obj = json.loads(data)
            with self.lock:
                self.sessions[obj["sessionId"]] = Session(obj["sessionId"], obj["token"], obj["version"])
        return status

    def validate(self, http, s):
        self.send(http, "validate", "POST", "/sessions/validate", headers={"Authorization": f"Bearer {s.token}"})

    def resolve(self, http, s):
        """Reads back a session whose last update's outcome is unknown."""
        status, data = self.send(http, "get", "GET", f"/sessions/{s.sid}")
        if status == 200:
            obj = json.loads(data)
            s.version, s.n, s.attempts = obj["version"], obj["data"].get("n"), []
        return status == 200

    def update(self, http, s):
        """s is busy (ours alone) until this returns."""
        if s.attempts and not self.resolve(http, s):
            return
        n = s.n + 1
        status, data = self.send(http, "update", "PUT", f"/sessions/{s.sid}", {"data": {"n": n}},
                                 {"If-Match": f'"{s.version}"'})
        if status == 200:
            s.version, s.n, s.attempts = json.loads(data)["version"], n, []
        elif status not in (400, 404, 409, 412):
            s.attempts.append((s.version + 1, n))   # may have been applied
        else:
            s.attempts.append((s.version, s.n))     # unexpected: read it back next time

    def delete(self, http, s):
        status, _ = self.send(http, "delete", "DELETE", f"/sessions/{s.sid}")
        with self.lock:
            if status == 204 or (status == 404 and s.maybe_deleted):
                self.sessions.pop(s.sid, None)
                if s in self.gone:
                    self.gone.remove(s)
                self.rev.add(s.sid, s.token)
            elif status == 404:               # never deleted, yet not found: verify() reports it lost
                self.sessions.pop(s.sid, None)
                self.vanished.append(s)
            elif not s.maybe_deleted:
                s.maybe_deleted = True        # never validated or updated again; sent again later
                self.sessions.pop(s.sid, None)
                self.gone.append(s)

    def pick(self):
        r = self.rng.randrange(100)
        for kind, weight in MIX:
            if r < weight:
                return kind
            r -= weight
        return MIX[0][0]

    def _choose(self):
        """The next request (method, session, marked) under the lock; marked
        when it is a write and the session is now busy until it ends."""
        kind = self.pick()
        live = [s for s in self.sessions.values() if s.sid not in self.busy]
        if kind == "create" or not live:
            return self.create, None, False
        if kind == "validate":
            ok = [s for s in self.sessions.values() if s.sid not in self.deleting]
            return self.validate, self.rng.choice(ok or live), False
        if kind == "delete":
            again = [s for s in self.gone if s.sid not in self.busy]
            s = again[0] if again else self.rng.choice(live)
            self.deleting.add(s.sid)
        else:
            s = self.rng.choice(live)
        self.busy.add(s.sid)
        return (self.delete if kind == "delete" else self.update), s, True

    def _task(self, op, s, marked):
        http = self._conn()
        try:
            if s is None:
                op(http=http)
            else:
                op(http, s)
        finally:
            with self.lock:
                self.idle.append(http)
                self.inflight -= 1
                if marked:
                    self.busy.discard(s.sid)
                    self.deleting.discard(s.sid)

    def run(self):
        interval = 1.0 / self.rate
        nxt = time.monotonic() + self.rng.random() * interval
        while not self.halt.is_set() and self.sent < self.max_requests:
            now = time.monotonic()
            if nxt >= self.stop_at:
                break
            if nxt > now:
                self.halt.wait(nxt - now)
                continue
            if now - nxt > 1.0:                   # too far behind: drop the missed slots, count them
                missed = int((now - nxt) / interval)
                self.skipped += missed
                nxt += missed * interval
            nxt += interval
            with self.lock:
                if self.inflight >= self.max_inflight:
                    self.skipped += 1             # every connection busy: not sent, counted
                    continue
                op, s, marked = self._choose()
                self.inflight += 1
                self.sent += 1
            t = threading.Thread(target=self._task, args=(op, s, marked), daemon=True)
            t.start()
            self.tasks.append(t)
            self.tasks = [x for x in self.tasks if x.is_alive()] if len(self.tasks) > 256 else self.tasks
        for t in self.tasks:
            t.join(timeout=self.timeout + 5)
        with self.lock:
            for h in self.idle:
                h.close()
            self.idle = []

    def verify(self, port, timeout, deadline):
        """Reads back every session this worker holds as live. Returns
        (checked, lost descriptions)."""
        http = Http(port, timeout)
        lost, checked = [], 0
        for s in list(self.sessions.values()) + self.vanished:
            while True:
                status, data = http.request("GET", f"/sessions/{s.sid}")
                if status in (200, 404) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            checked += 1
            if status != 200:
                lost.append(f"{s.sid}: GET answered {status} (acknowledged version {s.version})")
                continue
            obj = json.loads(data)
            found = (obj["version"], obj["data"].get("n"))
            if found != (s.version, s.n) and found not in s.attempts:
                lost.append(f"{s.sid}: found version {found[0]} n={found[1]}, acknowledged "
                            f"{s.version} n={s.n} (attempts {s.attempts})")
                continue
            while True:
                status, data = http.request("POST", "/sessions/validate?touch=false",
                                            headers={"Authorization": f"Bearer {s.token}"})
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if not is_valid(status, data):
                lost.append(f"{s.sid}: its token does not validate ({status})")
        http.close()
        return checked, lost

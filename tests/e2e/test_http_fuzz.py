"""Mutation fuzzing of the HTTP server over real sockets.

Seeded (the seed is printed, and SESSIOND_FUZZ_SEED replays a run): valid
requests are mutated byte-wise (flip, insert, delete, duplicate a span,
truncate, splice two requests) and sent, several per connection. Whatever the
bytes, the server must answer with a well-formed status that is not a 5xx
other than 501 (unknown transfer coding) and 503, or close the connection,
and it must stay healthy. Under the ASan build (make test runs both) this
also catches memory errors on every path the mutations reach.
Bounded: SESSIONS_FUZZ_CASES cases (default 1500) and 60 s at most.
"""
import os
import random
import socket
import time

from conftest import http_request_bytes

SEEDS = [
    http_request_bytes("GET", "/healthz"),
    http_request_bytes("GET", "/users/alice%2Fbob/sessions?limit=5&cursor=1.AAAAAAAAAAAAAAAAAAAAAA"),
    http_request_bytes("POST", "/sessions", headers=[("Content-Type", "application/json"),
                                                      ("Content-Length", "31")],
                       body=b'{"userId":"fuzz","mfa":false}  '),
    http_request_bytes("POST", "/sessions/validate",
                       headers=[("Authorization", "Bearer " + "A" * 43)]),
    http_request_bytes("PUT", "/sessions/AAAAAAAAAAAAAAAAAAAAAA",
                       headers=[("Content-Type", "application/json"), ("If-Match", '"1", "2"'),
                                ("Transfer-Encoding", "chunked")],
                       body=b"d\r\n{\"mfa\":true}\r\n0\r\n\r\n"),
    http_request_bytes("DELETE", "/users/x/sessions?except=AAAAAAAAAAAAAAAAAAAAAA"),
    http_request_bytes("POST", "/sessions/bulk-delete", headers=[("Content-Type", "application/json"),
                                                                   ("Content-Length", "20")],
                       body=b'{"userIds":["a","b"]}'[:20]),
]
TOKENS = [b"\r\n", b"\r\n\r\n", b" ", b":", b"\x00", b"\r", b"\n", b"%", b"%00", b"0\r\n\r\n",
          b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: y\r\n",
          b"ffffffffffffffff\r\n", b"\t", b"\xff\xfe", b"HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.choice(TOKENS)
        elif op == 2 and data:
            del data[pos:pos + rng.randint(1, 8)]
        elif op == 3 and data:
            span = data[pos:pos + rng.randint(1, 16)]
            data[pos:pos] = span * rng.randint(1, 4)
        elif op == 4:
            data = data[:pos]
        else:
            data += rng.choice(SEEDS)
    return bytes(data)


def exchange(port, payload, timeout=2.0):
    """Sends payload and reads until the server closes or goes quiet.
    Returns the status codes seen."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(payload)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    statuses = []
    for line in out.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            parts = line.split(b" ")
            assert len(parts) >= 3 and parts[1].isdigit(), f"malformed status line {line!r}"
            statuses.append(int(parts[1]))
    return statuses


def test_mutated_requests_never_5xx_and_server_survives(server):
    seed = int(os.environ.get("SESSIOND_FUZZ_SEED", random.randrange(1 << 30)))
    cases = int(os.environ.get("SESSIONS_FUZZ_CASES", "1500"))
    print(f"fuzz seed {seed} (replay with SESSIOND_FUZZ_SEED={seed})")
    rng = random.Random(seed)
    deadline = time.monotonic() + 60
    seen = {}
    n = 0
    while n < cases and time.monotonic() < deadline:
        payload = b"".join(mutate(rng, rng.choice(SEEDS)) for _ in range(rng.randint(1, 3)))
        statuses = exchange(server.port, payload)
        for st in statuses:
            seen[st] = seen.get(st, 0) + 1
            assert st < 500 or st in (501, 503), \
                f"seed {seed} case {n}: status {st} for {payload[:300]!r}"
        n += 1
        if n % 250 == 0:
            assert server.api.get("/healthz").status_code == 200, f"seed {seed}: unhealthy after {n}"
    assert server.api.get("/healthz").status_code == 200
    assert server.api.get("/readyz").status_code == 200
    print(f"{n} cases, statuses {dict(sorted(seen.items()))}")
    assert n >= 100, "too few cases ran to mean anything"

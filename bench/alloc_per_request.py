"""Heap calls per request on the hot routes, on one warm keep-alive connection
(`make alloc-count`; issue 14, item 2). A measurement, not a test: it prints
a table and passes whatever the numbers are.

Compiles bench/alloccount.c (an LD_PRELOAD counter of malloc, calloc,
realloc, free, posix_memalign/aligned_alloc/memalign) into
build/alloccount.so, starts build/sessiond under it on a free 127.0.0.1 port
with a temporary data directory, creates one session, then for each route:
opens a keep-alive connection, warms it (--warmup requests), reads the
counters, sends --requests requests one after another on that connection,
reads the counters again and divides. Every thread of the server counts
(the writer, the sweeper, ...): a rolling-expiry touch costs what it costs
wherever it runs; the idle line shows what the background threads do
meanwhile. The client is this process, so its allocations are not counted.

Columns: allocations = malloc + calloc + realloc + memalign calls (every
realloc counts, whether it grows a block or makes one); frees = free of a
non-NULL pointer; net blocks = blocks made (malloc, calloc, realloc of NULL,
memalign) minus frees, about 0 when a request keeps nothing; bytes = the
sizes asked for.

    /usr/bin/python3 bench/alloc_per_request.py [--requests 10000] [--warmup 300]
"""
import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM_SRC = os.path.join(ROOT, "bench", "alloccount.c")
SHIM = os.path.join(ROOT, "build", "alloccount.so")
SESSIOND = os.path.join(ROOT, "build", "sessiond")

# struct ac_file in alloccount.c: magic, nctr, then the counters in this order.
COUNTERS = ("malloc", "calloc", "realloc", "free", "memalign", "bytes", "realloc0")
MAGIC = 0x31434F4C4C41
SETTLE = 0.2  # seconds: let the server finish what follows its last reply


def build_shim():
    os.makedirs(os.path.dirname(SHIM), exist_ok=True)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", SHIM, SHIM_SRC, "-ldl"],
                   check=True)


def snapshot(path):
    with open(path, "rb") as f:
        raw = f.read()
    magic, n = struct.unpack_from("<QQ", raw)
    if magic != MAGIC or n != len(COUNTERS):
        raise SystemExit(f"{path}: not an alloccount file (magic {magic:#x}, {n} counters)")
    return dict(zip(COUNTERS, struct.unpack_from(f"<{n}Q", raw, 16)))


class Conn:
    """One keep-alive HTTP/1.1 connection over a raw socket; replies framed
    by Content-Length (sessiond always sends one)."""

    def __init__(self, port):
        self.host = f"127.0.0.1:{port}"
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, method, target, headers=(), body=b""):
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"] + list(headers)
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        end = self.buf.index(b"\r\n\r\n")
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" not in fields:
            raise SystemExit(f"{method} {target}: a reply without Content-Length: {lines}")
        if fields.get("connection", "").lower() == "close":
            raise SystemExit(f"{method} {target}: the server closed the keep-alive connection ({status})")
        total = end + 4 + int(fields["content-length"])
        while len(self.buf) < total:
            self._recv()
        reply, self.buf = self.buf[end + 4:total], self.buf[total:]
        return status, reply

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise SystemExit("the server closed the connection")
        self.buf += data

    def close(self):
        self.sock.close()


def routes(token, sid):
    bearer = [f"Authorization: Bearer {token}"]
    form = f"token={token}".encode()
    return [
        ("POST /sessions/validate (Bearer, touch default)", "POST", "/sessions/validate", bearer, b""),
        ("POST /sessions/validate?touch=false", "POST", "/sessions/validate?touch=false", bearer, b""),
        ("POST /sessions/validate (body {\"token\"})", "POST", "/sessions/validate",
         ["Content-Type: application/json"], json.dumps({"token": token}).encode()),
        ("GET /sessions/{id}/validate", "GET", f"/sessions/{sid}/validate", [], b""),
        ("GET /auth (Bearer)", "GET", "/auth", bearer, b""),
        ("POST /introspect (form token=...)", "POST", "/introspect",
         ["Content-Type: application/x-www-form-urlencoded"], form),
        # Minting may allocate (a read of the optional fields, the claims,
        # the signature): shown for comparison, not held to 0.
        ("POST /sessions/validate?accessToken=true (mints a JWT)", "POST",
         "/sessions/validate?accessToken=true", bearer, b""),
        ("POST /sessions/token (mints a JWT)", "POST", "/sessions/token", bearer, b""),
    ]


def measure(port, counts, route, n, warmup):
    _, method, target, headers, body = route
    c = Conn(port)
    try:
        status, reply = c.request(method, target, headers, body)
        if status != 200:
            raise SystemExit(f"{method} {target}: {status} {reply[:200]!r}")
        for _ in range(warmup):
            c.request(method, target, headers, body)
        time.sleep(SETTLE)
        before = snapshot(counts)
        t = time.monotonic()
        bad = 0
        for _ in range(n):
            status, _ = c.request(method, target, headers, body)
            bad += status != 200
        elapsed = time.monotonic() - t
        time.sleep(SETTLE)
        after = snapshot(counts)
    finally:
        c.close()
    return {k: after[k] - before[k] for k in COUNTERS}, elapsed, bad, reply


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10000, help="measured requests per route")
    ap.add_argument("--warmup", type=int, default=300, help="requests that warm the connection first")
    ap.add_argument("--binary", default=SESSIOND)
    ap.add_argument("--jwt-reuse", default=None,
                    help="the server's --jwt-reuse (default: its own, 0.2: after the first request the "
                         "minting rows hand the same token out again; 0: every request signs)")
    args = ap.parse_args()

    build_shim()
    tmp = tempfile.mkdtemp(prefix="sessiond-alloc-")
    counts = os.path.join(tmp, "alloccount")
    port = harness.free_port()
    keys = os.path.join(tmp, "jwt-keys")  # for the minting row
    with open(keys, "w") as f:
        f.write(subprocess.run([args.binary, "jwk", "generate"], check=True, capture_output=True,
                               text=True).stdout)
    os.chmod(keys, 0o600)
    env = dict(os.environ, LD_PRELOAD=SHIM, ALLOCCOUNT_FILE=counts)
    proc = harness.start([args.binary, "--listen", f"127.0.0.1:{port}", "--data-dir",
                          os.path.join(tmp, "data"), "--log-level", "warn", "--jwt-keys", keys]
                         + (["--jwt-reuse", args.jwt_reuse] if args.jwt_reuse is not None else []),
                         port, "alloc-sessiond.log", env=env)
    try:
        c = Conn(port)
        status, reply = c.request("POST", "/sessions", ["Content-Type: application/json"],
                                  json.dumps({"userId": "alloc-count"}).encode())
        c.close()
        if status != 201:
            raise SystemExit(f"POST /sessions: {status} {reply[:200]!r}")
        s = json.loads(reply)
        token, sid = s["token"], s["sessionId"]

        # What the background threads do while nobody asks anything.
        time.sleep(SETTLE)
        before = snapshot(counts)
        time.sleep(1.0)
        after = snapshot(counts)
        idle = {k: after[k] - before[k] for k in COUNTERS}

        rows = []
        for route in routes(token, sid):
            d, elapsed, bad, _ = measure(port, counts, route, args.requests, args.warmup)
            rows.append((route[0], d, elapsed, bad))
    finally:
        harness.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.requests
    print(f"heap calls per request, {n} requests on one keep-alive connection warmed by {args.warmup} "
          f"(LD_PRELOAD bench/alloccount.c; release build; --jwt-reuse "
          f"{args.jwt_reuse if args.jwt_reuse is not None else 'default'})")
    print()
    print("| route | allocations/req | malloc | calloc | realloc | memalign | frees/req | net blocks/req | bytes/req | non-200 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, d, elapsed, bad in rows:
        allocs = d["malloc"] + d["calloc"] + d["realloc"] + d["memalign"]
        net = d["malloc"] + d["calloc"] + d["realloc0"] + d["memalign"] - d["free"]
        print(f"| {name} | {allocs / n:.2f} | {d['malloc'] / n:.2f} | {d['calloc'] / n:.2f} | "
              f"{d['realloc'] / n:.2f} | {d['memalign'] / n:.2f} | {d['free'] / n:.2f} | {net / n:.2f} | "
              f"{d['bytes'] / n:.0f} | {bad} |")
    print()
    idle_allocs = idle["malloc"] + idle["calloc"] + idle["realloc"] + idle["memalign"]
    print(f"idle server, 1 s with no requests: {idle_allocs} allocations, {idle['free']} frees "
          f"(background threads; runs took {min(r[2] for r in rows):.2f}-{max(r[2] for r in rows):.2f} s each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

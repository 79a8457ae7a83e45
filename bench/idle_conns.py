"""RSS that idle keep-alive connections add to sessiond (`make idle-conns`;
issue 14, item 4). A measurement, not a test: it prints the figures and
passes whatever they are. bench.py runs the same function for its notes.

Starts build/sessiond (the release build) on a free 127.0.0.1 port with a
temporary data directory, --max-connections raised above N, the per-address
cap off (every connection comes from 127.0.0.1) and a --connection-timeout
of 10 minutes (so none is closed while it is measured). It reads VmRSS from
/proc/PID/status, opens N connections one after another, each making one
GET /healthz and reading its reply (so each is a keep-alive connection that
has served a request, and then waits), waits half a second, reads VmRSS
again and prints the difference. RLIMIT_NOFILE is raised to its hard limit
(the server inherits it); N is lowered to fit when the hard limit is short.

    /usr/bin/python3 bench/idle_conns.py [--conns 10000]
"""
import argparse
import resource
import socket
import time

import harness

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"


def raise_nofile(n):
    """Raises the descriptor limit to its hard limit; returns how many
    connections fit under it (n or fewer)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return min(n, max(0, hard - 200))


def read_reply(c):
    """Reads one reply framed by Content-Length (sessiond always sends it)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = c.recv(4096)
        if not chunk:
            raise SystemExit("idle connections: the server closed a connection")
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = c.recv(4096)
        if not chunk:
            raise SystemExit("idle connections: the server closed a connection")
        body += chunk


def idle_connections(n):
    """RSS a fresh sessiond adds for n idle keep-alive connections, each of
    which has made one request. Returns (baseline MB, with connections MB)."""
    sd, port = harness.start_sessiond(["--max-connections", str(n + 100), "--connection-timeout", "10m"])
    socks = []
    try:
        time.sleep(0.5)
        before = harness.status_kb(sd.pid, "VmRSS")
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port))
            socks.append(c)
            c.sendall(REQUEST)
            read_reply(c)
        time.sleep(0.5)
        after = harness.status_kb(sd.pid, "VmRSS")
        if sd.poll() is not None:
            raise SystemExit("idle connections: sessiond exited")
    finally:
        for c in socks:
            c.close()
        harness.stop(sd)
    return before / 1024, after / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=10000, help="idle keep-alive connections to open")
    a = ap.parse_args()
    n = raise_nofile(a.conns)
    before, after = idle_connections(n)
    print(f"{n:,} idle keep-alive connections (one request each): VmRSS {before:.1f} MB -> "
          f"{after:.1f} MB, {after - before:.1f} MB added ({(after - before) * 1024 * 1024 / n:,.0f} "
          f"bytes per connection)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Creates N sessions through the real API (POST /sessions, 64 connections,
keep-alive) and writes "token sessionId" lines for the wrk scripts.
Usage: populate.py HOST:PORT N OUTFILE [USERS]"""
import asyncio
import json
import sys


async def worker(host, port, todo, users, out):
    reader, writer = await asyncio.open_connection(host, port)
    while todo:
        i = todo.pop()
        body = json.dumps({"userId": f"user-{i % users}", "ipAddress": "192.0.2.1",
                           "userAgent": "populate", "data": {"plan": "free"}}).encode()
        # The real address as Host: without keys sessiond answers only loopback names.
        writer.write(b"POST /sessions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, len(body), body))
        status = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        data = await reader.readexactly(length)
        if b" 201 " not in status:
            raise SystemExit(f"create failed: {status!r} {data[:200]!r}")
        s = json.loads(data)
        out.append(f"{s['token']} {s['sessionId']}\n")
    writer.close()


async def main():
    hostport, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    users = int(sys.argv[4]) if len(sys.argv) > 4 else max(1, n // 10)
    host, port = hostport.rsplit(":", 1)
    todo, out = list(range(n)), []
    await asyncio.gather(*(worker(host, int(port), todo, users, out) for _ in range(64)))
    with open(path, "w") as f:
        f.writelines(out)


asyncio.run(main())

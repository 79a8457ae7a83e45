#!/usr/bin/env python3
"""Bulk-loads N live sessions straight into a stopped sessiond's embedded
store (DATA_DIR/sessiond.db, whose schema a previous start created), for the
scaling runs of make bench: through the API 10 M creates would take most of
an hour, here about two minutes. The rows are what POST /sessions writes (a
token's SHA-256, a 22-character id, users of ten sessions each, one hour
idle and a day absolute from now) without their audit events, which
validation never reads.

SAMPLE of them (all when N <= SAMPLE) get real random tokens, written as
"token sessionId" lines to TOKENS_OUT for the wrk scripts (a wrk thread
keeps the file in memory). The others are generated inside SQLite: random
32-byte token hashes (whose tokens nobody knows, as for any store's rows)
and sequential ids, which only make the load faster (validation by token
never reads the id index).

Usage: load.py DATA_DIR N TOKENS_OUT [SAMPLE]"""
import base64
import hashlib
import os
import sqlite3
import sys
import time

ATTRS = '{"userAgent":"load","ipAddress":"192.0.2.1","mfa":false,"data":{"plan":"free"}}'


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def main():
    data_dir, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sample = int(sys.argv[4]) if len(sys.argv) > 4 else 200000
    db = sqlite3.connect(os.path.join(data_dir, "sessiond.db"), isolation_level=None)
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sessions'").fetchone():
        raise SystemExit("load.py: no sessions table: start sessiond on this data dir once first")
    # A bulk load, not a service: no journal to speak of, no fsync until the
    # end, and a page cache big enough for the random index inserts.
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-4194304")
    now = int(time.time() * 1000)
    t0 = time.time()
    cols = ("INSERT INTO sessions(id, token_hash, user_id, created_at, last_seen, expiry,"
            " absolute_expiry, idle_ttl, version, attrs, auth_time) ")
    known = min(n, sample)
    db.execute("BEGIN")
    if n > known:
        db.execute(cols + "WITH RECURSIVE c(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
                   "SELECT printf('L%021d', i), randomblob(32), printf('user-%08d', i / 10), ?, ?, ?, ?,"
                   " 3600000, 1, ?, ? FROM c",
                   (known, n - 1, now, now, now + 3600000, now + 86400000, ATTRS, now))
    # The sessions wrk validates are stamped after the bulk (10M take about
    # three minutes): a validation more than 5 % of the idle timeout (3 min)
    # after lastSeen extends the expiry, a write, which would make the big
    # stores' runs measure a burst of touches the small ones never see.
    now = int(time.time() * 1000)
    rows = []
    with open(out, "w") as f:
        for i in range(known):
            raw = os.urandom(48)
            token, sid = b64(raw[:32]), b64(raw[32:])
            f.write(f"{token} {sid}\n")
            rows.append((sid, hashlib.sha256(token.encode()).digest(), f"user-{i // 10:08d}", now, now,
                         now + 3600000, now + 86400000, 3600000, 1, ATTRS, now))
    db.executemany(cols + "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode=WAL")  # what sessiond expects to find
    db.close()
    print(f"loaded {n:,} sessions in {time.time() - t0:.1f} s", file=sys.stderr)


main()

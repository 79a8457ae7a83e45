#!/usr/bin/env python3
"""Where a write's CPU goes, thread by thread: starts sessiond on the
embedded store, fills it with POPULATION sessions, runs wrk with create.lua
(or update.lua over those sessions, after a create run as write_compare.py
does), and prints each server thread's CPU per request (utime + stime from
/proc/PID/task/TID/stat) and the time it waited for a core (schedstat's run
queue delay). A diagnostic, not a benchmark row: the per-request figures are
what docs/performance.md quotes for the writer, the HTTP loops, the audit
and checkpoint threads. Never part of make test.

Usage: bench/thread_cpu.py [--write create|update] [--duration S] [--population N]
                           [-- extra sessiond flags]
"""
import argparse
import os
import sys

from harness import TMP, populate, start_sessiond, stop, wrk


def threads(pid):
    """{tid: (name, cpu ticks, run-queue ns)} of the process's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                wait_ns = int(f.read().split()[1])
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        out[tid] = (name, int(fields[11]) + int(fields[12]), wait_ns)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", choices=("create", "update"), default="update")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--population", type=int, default=50000)
    ap.add_argument("extra", nargs="*", help="sessiond flags after --")
    a = ap.parse_args()
    sd, port = start_sessiond(["--max-sessions-per-user", "0"] + a.extra)
    try:
        tokens = os.path.join(TMP, "thread-cpu-tokens.txt")
        populate(port, a.population, tokens)
        if a.write == "update":
            wrk(port, "create.lua", [], max(1, a.duration // 2), proc=sd)
        before = threads(sd.pid)
        r = wrk(port, f"{a.write}.lua", [tokens] if a.write == "update" else [], a.duration, proc=sd)
        after = threads(sd.pid)
    finally:
        stop(sd)
    n = max(1, r["requests"])
    hz = os.sysconf("SC_CLK_TCK")
    print(f"{a.write}s: {r['rps']:,.0f}/s, p50 {r['p50_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, "
          f"sessiond CPU {r['cpu']:.0f} %")
    print(f"| thread | CPU s | us per {a.write} | waited for a core, s |")
    print("|---|---|---|---|")
    for tid, (name, ticks, wait) in sorted(after.items(), key=lambda kv: kv[1][0]):
        if tid not in before:
            continue
        cpu = (ticks - before[tid][1]) / hz
        waited = (wait - before[tid][2]) / 1e9
        if cpu or waited > 0.001:
            print(f"| {name} ({tid}) | {cpu:.2f} | {cpu * 1e6 / n:.1f} | {waited:.2f} |")


if __name__ == "__main__":
    sys.exit(main())

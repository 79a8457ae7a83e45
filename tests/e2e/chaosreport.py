"""The figures of a chaos run (chaos.py) and the table make chaos prints.

A failure window is a stretch of the run in which every request of a kind
failed: from the send time of the first failing request after a success to
the send time of the next succeeding one (requests are ordered by send
time; with several clients in flight, one success ends the window). The
windows are measured for writes (create, update, delete) and for
validations; each fault is credited with the windows that start between
its kill and the next fault.
"""

from collections import Counter

from chaosload import WRITES


def windows(results, kinds):
    """[(start, end)] of the failure windows of `kinds` (monotonic times)."""
    rows = sorted((t0, ok) for kind, t0, _, ok, _ in results if kind in kinds)
    out, start = [], None
    for t, ok in rows:
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, rows[-1][0]))
    return out


def _longest(ws):
    return max(ws, key=lambda w: w[1] - w[0]) if ws else None


def _pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else 0.0


def summarize(results, t0, t_end, done, lost, acked, violations, revoked, rev_checks, unanswered, skipped):
    """Every figure of the run as a dict (times in seconds from t0)."""
    sent = len(results)
    ok = sum(1 for r in results if r[3])
    failed = Counter(str(r[4]) for r in results if not r[3])
    kinds = {}
    for kind in ("validate", "create", "update", "delete", "get"):
        rs = [r for r in results if r[0] == kind]
        lat = [r[2] - r[1] for r in rs if r[3]]
        kinds[kind] = {"sent": len(rs), "ok": sum(1 for r in rs if r[3]),
                       "p50_ms": _pct(lat, 50) * 1000, "p99_ms": _pct(lat, 99) * 1000}
    ww, vw = windows(results, WRITES), windows(results, ("validate",))
    faults = []
    kills = [ev[0][1] for _, ev in done] + [t_end]
    for k, (name, ev) in enumerate(done):
        lo, hi = kills[k], kills[k + 1]
        in_range = [r for r in results if lo <= r[1] < hi]

        def back(ws):
            mine = [w for w in ws if lo <= w[0] < hi]
            return max(w[1] for w in mine) - lo if mine else 0.0
        faults.append({"name": name, "at": lo - t0,
                       "events": [(e, t - lo) for e, t in ev[1:]],
                       "failed": Counter(r[0] for r in in_range if not r[3]),
                       "writes_back": back(ww), "validations_back": back(vw)})

    # The same ratio without the requests sent while PostgreSQL had no
    # primary (from the kill until writes were back): what the other faults cost.
    outside = None
    for f in faults:
        if f["name"] == "pg-primary":
            lo = t0 + f["at"]
            hi = lo + max(f["writes_back"], f["validations_back"])
            rest = [r for r in results if not lo <= r[1] < hi]
            outside = sum(1 for r in rest if r[3]) / len(rest) if rest else None

    def rel(w):
        return None if w is None else (w[1] - w[0], w[0] - t0)
    # A slot the load generator could not send counts against availability.
    due = sent + skipped
    return {"duration": t_end - t0, "sent": sent, "ok": ok, "failed": failed,
            "availability": ok / due if due else 0.0, "availability_outside_pg": outside, "kinds": kinds,
            "write_window": rel(_longest(ww)), "validate_window": rel(_longest(vw)),
            "lost": lost, "acked": acked, "violations": violations, "revoked": revoked,
            "rev_checks": rev_checks, "unanswered": unanswered, "skipped": skipped, "faults": faults}


def _fault_at(s, at):
    name = None
    for f in s["faults"]:
        if f["at"] <= at + 0.5:
            name = f["name"]
    return name


def table(s, header=""):
    """The printed report: the headline table, then per kind and per fault."""
    def window(w):
        if w is None:
            return "none"
        f = _fault_at(s, w[1])
        return f"{w[0]:.2f} s (at {w[1]:.1f} s{', after the ' + f + ' kill' if f else ''})"
    acked = s["acked"]
    rows = [("requests sent", f"{s['sent']:,}"), ("succeeded", f"{s['ok']:,}")]
    for label, n in sorted(s["failed"].items(), key=lambda kv: -kv[1]):
        rows.append((f"failed: {label}", f"{n:,}"))
    if s["skipped"]:
        rows.append(("not sent (the client behind or its connections all busy)", f"{s['skipped']:,}"))
    rows.append(("availability (succeeded / (sent + not sent))", f"{100 * s['availability']:.3f} %"))
    if s["availability_outside_pg"] is not None:
        rows.append(("  the same without PostgreSQL's failover", f"{100 * s['availability_outside_pg']:.3f} % "
                                                                 "(requests sent from its kill until writes "
                                                                 "were back left out)"))
    rows += [("longest window in which writes failed", window(s["write_window"])),
             ("longest window in which validations failed", window(s["validate_window"])),
             ("acknowledged writes lost", f"{len(s['lost'])}  (of {acked['writes']:,} acknowledged: "
                                          f"{acked['creates']:,} creates, {acked['updates']:,} updates, "
                                          f"{acked['deletes']:,} deletes; {acked['read_back']:,} live "
                                          "sessions read back)"),
             ("revoked sessions validating after their DELETE", f"{len(s['violations'])}  (of {s['revoked']:,} "
                                                               f"revoked; {s['rev_checks']:,} checks through "
                                                               "every replica)")]
    w = max(len(a) for a, _ in rows)
    out = [header] if header else []
    out += [f"| {a:<{w}} | {b} |" for a, b in rows]
    out.append("")
    out.append("per kind: " + "; ".join(f"{k} {v['ok']:,}/{v['sent']:,} (p50 {v['p50_ms']:.1f} ms, "
                                        f"p99 {v['p99_ms']:.1f} ms)"
                                        for k, v in s["kinds"].items() if v["sent"]))
    for f in s["faults"]:
        failed = ", ".join(f"{k} {n}" for k, n in sorted(f["failed"].items())) or "none"
        out.append(f"fault {f['name']:<12} at {f['at']:6.1f} s: " +
                   ", ".join(f"{e} +{t:.1f} s" for e, t in f["events"]) +
                   f"; failed until the next fault: {failed}; writes failing until +{f['writes_back']:.2f} s, "
                   f"validations until +{f['validations_back']:.2f} s")
    if s["unanswered"]:
        out.append(f"revoked tokens no replica answered at the end: {len(s['unanswered'])}")
    for v in s["violations"][:10]:
        out.append(f"REVOKED SESSION VALIDATED: {v[0]} on port {v[1]}, {v[2]} s after its DELETE returned")
    for x in s["lost"][:10]:
        out.append(f"LOST: {x}")
    return "\n".join(out)


def targets(s):
    """The issue's targets, each (what, met?, figure)."""
    pg = [f for f in s["faults"] if f["name"] == "pg-primary"]
    vw = s["validate_window"][0] if s["validate_window"] else 0.0
    out = [("0 acknowledged writes lost", not s["lost"], str(len(s["lost"]))),
           ("0 revoked sessions validating", not s["violations"], str(len(s["violations"]))),
           ("availability >= 99.9 %", s["availability"] >= 0.999, f"{100 * s['availability']:.3f} %"),
           ("validations never interrupted by more than 1 s", vw <= 1.0, f"{vw:.2f} s")]
    if pg:
        out.append(("writes back within 10 s of the PostgreSQL primary kill", pg[0]["writes_back"] <= 10.0,
                    f"{pg[0]['writes_back']:.2f} s"))
    return out

"""Command line, environment and config-file options."""

import json
import os
import signal
import re
import subprocess

import pytest

from conftest import (REPO, SESSIOND_BIN, child_env, free_port, history_rows, http_request_bytes, RawConn,
                      new_user, observe_raw, seconds_between, wait_for)

OPTIONS = ["--listen", "--data-dir", "--idle-timeout", "--absolute-timeout", "--max-absolute-timeout",
           "--max-idle-timeout",
           "--touch-fraction", "--sweep-interval", "--history-retention", "--max-body-bytes", "--log-level",
           "--config", "--help"]


def _run(args, tmp_path, timeout=10):
    """Run the binary to completion (it is killed by PID if it outlives the timeout)."""
    try:
        p = subprocess.run([SESSIOND_BIN, *args], cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`sessiond {' '.join(args)}` was still running after {timeout}s "
                    f"(stderr: {(e.stderr or b'')[-500:]!r})")
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_help_lists_every_option(tmp_path):
    rc, out, err = _run(["--help"], tmp_path)
    assert rc == 0, f"--help must exit 0, got {rc}: {err[-500:]}"
    text = out + err
    missing = [o for o in OPTIONS if o not in text]
    assert not missing, f"--help does not mention {missing}:\n{text}"


COMMANDS = ["audit", "backup", "reencrypt", "check", "help"]


def test_help_lists_the_commands_and_each_has_its_own_help(tmp_path):
    rc, out, _ = _run(["--help"], tmp_path)
    listed = [c for c in COMMANDS if re.search(rf"^  sessiond {c} +\S", out, re.M)]
    assert listed == COMMANDS, f"--help lists {listed} of the commands {COMMANDS}:\n{out[-1500:]}"
    rc, out, err = _run(["help"], tmp_path)
    assert rc == 0 and all(f"sessiond {c} " in out for c in COMMANDS), (rc, out, err)
    for c in COMMANDS:
        for args in ([c, "--help"], ["help", c]):
            rc, out, err = _run(args, tmp_path)
            assert rc == 0 and out.startswith(f"usage: sessiond {c} "), (args, rc, out, err)
    rc, out, err = _run(["frobnicate"], tmp_path)
    assert rc == 2 and "no command 'frobnicate'" in err and "sessiond help" in err, (rc, err)
    rc, out, err = _run(["help", "frobnicate"], tmp_path)
    assert rc == 2 and "no command" in err


def test_unknown_flag_fails_with_message(tmp_path):
    rc, out, err = _run(["--no-such-flag", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path)],
                        tmp_path)
    assert rc != 0, "an unknown flag must exit non-zero"
    assert "no-such-flag" in (out + err), f"the error message should name the flag: {(out + err)[-500:]!r}"


@pytest.mark.parametrize("args", [["--idle-timeout", "abc"], ["--idle-timeout", "-5s"], ["--sweep-interval", "1x"],
                                  ["--log-level", "verbose"], ["--max-body-bytes", "lots"],
                                  ["--touch-fraction", "abc"]],
                         ids=["duration-word", "duration-negative", "duration-unit", "log-level", "max-body", "fraction"])
def test_invalid_option_values_fail(tmp_path, args):
    rc, out, err = _run([*args, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path)], tmp_path)
    assert rc != 0, f"`{' '.join(args)}` must be rejected at startup with a non-zero exit"
    assert (out + err).strip(), "rejection should print a message"


@pytest.mark.parametrize("option", [["--store-standby", "postgresql://u@127.0.0.1:1/db"],
                                    ["--write-hold", "10s"]], ids=["store-standby", "write-hold"])
def test_shared_store_options_need_a_shared_store(tmp_path, option):
    rc, out, err = _run([*option, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path)],
                        tmp_path)
    assert rc == 2 and f"{option[0]} goes with a PostgreSQL --store" in err, (rc, err[-500:])


def test_millisecond_duration_accepted(make_server):
    srv = make_server("--sweep-interval", "500ms")
    assert srv.api.get("/healthz").status_code == 200


@pytest.mark.parametrize("value,seconds", [("1500ms", 1.5), ("2s", 2), ("5m", 300), ("1h", 3600),
                                           ("30d", 30 * 86400), ("90", 90)])
def test_duration_formats(make_server, value, seconds):
    srv = make_server("--idle-timeout", value, "--absolute-timeout", "31d", "--max-idle-timeout", "31d")
    s = srv.api.create()
    got = seconds_between(s["createdAt"], s["expiry"])
    assert abs(got - seconds) <= 0.1, f"--idle-timeout {value}: expiry - createdAt = {got}s, want {seconds}s"


def _idle_of(srv):
    s = srv.api.create()
    return round(seconds_between(s["createdAt"], s["expiry"]))


def test_precedence_flag_env_config_default(make_server):
    assert _idle_of(make_server()) == 3600, "default idle timeout is 1h"
    cfg = {"idle-timeout": "100"}
    assert _idle_of(make_server(config=cfg)) == 100, "config file value must apply"
    assert _idle_of(make_server(config=cfg, env={"SESSIOND_IDLE_TIMEOUT": "200"})) == 200, \
        "env must beat config file"
    assert _idle_of(make_server("--idle-timeout", "300", config=cfg, env={"SESSIOND_IDLE_TIMEOUT": "200"})) == 300, \
        "flag must beat env and config file"
    assert _idle_of(make_server(env={"SESSIOND_IDLE_TIMEOUT": "2m"})) == 120, "env alone must apply"


def _post_size(srv, size):
    base = json.dumps({"userId": new_user("cfg")}).encode()
    body = base + b" " * (size - len(base))
    c = RawConn(srv.port)
    try:
        c.send(http_request_bytes("POST", "/sessions", headers=[("Content-Type", "application/json"),
                                                                ("Content-Length", str(len(body)))], body=body))
        r = c.read_response(timeout=20)
    finally:
        c.close()
    assert r is not None
    observe_raw("POST", "/sessions", r)
    return r.status


def test_precedence_max_body_bytes(make_server):
    srv = make_server(config={"max-body-bytes": "2000"}, env={"SESSIOND_MAX_BODY_BYTES": "3000"})
    assert _post_size(srv, 2500) == 201, "env max-body-bytes=3000 must beat config 2000"
    assert _post_size(srv, 3500) == 413
    srv = make_server("--max-body-bytes", "4000", config={"max-body-bytes": "2000"},
                      env={"SESSIOND_MAX_BODY_BYTES": "3000"})
    assert _post_size(srv, 3500) == 201, "flag max-body-bytes=4000 must beat env and config"
    srv = make_server(config={"max-body-bytes": "2000", "log-level": "warn"})
    assert _post_size(srv, 2500) == 413, "config max-body-bytes=2000 must apply"


def test_config_file_multiple_options(make_server):
    srv = make_server(config="idle-timeout = 45\nabsolute-timeout = 2h\nmax-idle-timeout = 90\n")
    s = srv.api.create()
    assert round(seconds_between(s["createdAt"], s["expiry"])) == 45
    assert round(seconds_between(s["createdAt"], s["absoluteExpiry"])) == 7200
    s = srv.api.create(ttlSeconds=1000)
    assert round(seconds_between(s["createdAt"], s["expiry"])) == 90, "max-idle-timeout from config must clamp ttl"


def test_log_level_controls_verbosity(make_server):
    counts = {}
    for level in ("debug", "error"):
        srv = make_server("--log-level", level)
        s = srv.api.create()
        srv.api.validate(s["token"])
        srv.api.get(f"/sessions/{s['sessionId']}")
        srv.api.get("/no-such-path", expect=404)
        srv.stop()
        counts[level] = len([ln for ln in srv.log_text().splitlines() if ln.strip()])
    assert counts["debug"] > counts["error"], f"debug should log more lines than error: {counts}"


def test_history_retention_purges_old_history(make_server):
    srv = make_server("--history-retention", "2s", "--sweep-interval", "200ms")
    s = srv.api.create()
    srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    rows = history_rows(srv.data_dir, s["sessionId"])
    assert [r[3] for r in rows] == ["revoked"], f"history row right after delete: {rows}"
    wait_for(lambda: history_rows(srv.data_dir, s["sessionId"]) == [], timeout=15,
             what="history rows older than --history-retention 2s to be purged")


def test_sighup_reloads_the_log_level_without_dropping_connections(make_server):
    srv = make_server(config={"log-level": "info"})
    s = srv.api.create()
    srv.api.get("/healthz")
    assert "request id=" not in srv.log_text(), "info level must not log each request"
    # The config file now says debug; SIGHUP applies it in place.
    path = srv.proc.args[srv.proc.args.index("--config") + 1]
    with open(path, "w") as f:
        f.write("log-level = debug\n")
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reloaded; log-level debug" in srv.log_text(), timeout=5,
             what="the reload to be logged")
    srv.api.validate(s["token"])
    wait_for(lambda: "request id=" in srv.log_text(), timeout=5,
             what="a debug request line after the reload")
    assert srv.proc.poll() is None, "SIGHUP must not stop the server"


def test_make_run_takes_an_address_and_a_data_directory(tmp_path):
    # A second `make run` beside the first: LISTEN= and DATA= on the command
    # line, SESSIOND_LISTEN / SESSIOND_DATA_DIR from the environment; the
    # command line wins. (make -n prints the command without running it.)
    def cmd(*args, env=None):
        p = subprocess.run(["make", "-n", "-s", "run", *args], cwd=REPO, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120, env={**child_env(), **(env or {})})
        assert p.returncode == 0, p.stderr
        return p.stdout.strip().splitlines()[-1]
    assert "--listen '127.0.0.1:8080' --data-dir './var'" in cmd()
    assert "--listen '127.0.0.1:9090' --data-dir './var2'" in cmd("LISTEN=127.0.0.1:9090", "DATA=./var2")
    env = {"SESSIOND_LISTEN": "127.0.0.1:9191", "SESSIOND_DATA_DIR": "/tmp/x"}
    assert "--listen '127.0.0.1:9191' --data-dir '/tmp/x'" in cmd(env=env)
    assert "--listen '127.0.0.1:9292'" in cmd("LISTEN=127.0.0.1:9292", env=env)


def test_check_connect_embedded_store(tmp_path, make_server):
    """`sessiond check --connect` on the embedded store: what a start would
    find in the data directory, read-only beside a running server, nothing
    made where there is nothing."""
    import sqlite3
    fresh = tmp_path / "fresh" / "data"
    rc, out, err = _run(["check", "--connect", "--data-dir", str(fresh)], tmp_path)
    assert rc == 2 and "a start could not make the store" in err, (rc, out, err)  # two levels missing
    fresh.parent.mkdir()
    rc, out, err = _run(["check", "--connect", "--data-dir", str(fresh)], tmp_path)
    assert rc == 0 and f"no store in {fresh} yet; a start makes one (schema version" in out, (rc, out, err)
    assert not fresh.exists(), "check must not create the data directory"
    srv = make_server()
    srv.api.create(new_user("probe"))
    rc, out, err = _run(["check", "--connect", "--data-dir", str(srv.data_dir)], tmp_path)
    assert rc == 0 and re.search(r"store sqlite in .*: schema version \d+; in use by a running sessiond", out), \
        (rc, out, err)
    srv.stop()
    before = sorted(p.name for p in srv.data_dir.iterdir())
    rc, out, err = _run(["check", "--connect", "--data-dir", str(srv.data_dir)], tmp_path)
    assert rc == 0 and "in use" not in out, (rc, out, err)
    # Read-only SQLite would make the -wal and -shm files (owned by whoever
    # checks, perhaps not the server's user): the check makes nothing.
    assert sorted(p.name for p in srv.data_dir.iterdir()) == before
    with sqlite3.connect(srv.data_dir / "sessiond.db") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    rc, out, err = _run(["check", "--connect", "--data-dir", str(srv.data_dir)], tmp_path)
    assert rc == 2 and "schema version 99, newer than this sessiond knows" in err, (rc, out, err)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "sessiond.db").write_bytes(b"not a database" * 100)
    rc, out, err = _run(["check", "--connect", "--data-dir", str(junk)], tmp_path)
    assert rc == 2 and "is not a store sessiond can read" in err, (rc, out, err)
    rc, out, err = _run(["check", "--connect", "--data-dir", str(junk / "sessiond.db")], tmp_path)
    assert rc == 2 and "is not a directory" in err, (rc, out, err)


def test_check_loads_what_a_start_loads(tmp_path):
    """`sessiond check` loads the configuration and every file it names as a
    start does, opens no store, and says what fails (exit 2) or sums up what
    a start would run with (exit 0)."""
    import hashlib
    import secrets
    data = tmp_path / "data"
    rc, out, err = _run(["check", "--data-dir", str(data)], tmp_path)
    assert rc == 0 and out.startswith("configuration ok: listen 127.0.0.1:8080, store sqlite in "), (rc, out, err)
    assert "API keys off (protected mode)" in out and not data.exists(), "check must not create the store"
    keys = tmp_path / "keys"
    keys.write_text(f"ops {hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()} sessions,admin\n")
    conf = tmp_path / "sessiond.conf"
    conf.write_text(f"listen = 0.0.0.0:{free_port()}\napi-keys = {keys}\n")
    rc, out, err = _run(["check", "--config", str(conf)], tmp_path)
    assert rc == 0 and "API keys on" in out and "0.0.0.0:" in out, (rc, out, err)
    rc, out, err = _run(["check", "--data-dir", str(data), "--store", "postgres://127.0.0.1:1/x", "--cache",
                         "redis://:pw@127.0.0.1:1/2"], tmp_path)
    assert rc == 0 and "store postgres with the Redis cache," in out and "pw" not in out + err, (rc, out, err)
    bad = [
        (["--listen", f"0.0.0.0:{free_port()}"], "without API keys"),
        (["--api-keys", str(tmp_path / "missing")], "missing"),
        (["--tls-cert", str(keys), "--tls-key", str(keys)], "TLS certificate"),
        (["--store-standby", "host=x"], "--store-standby goes with a PostgreSQL --store"),
        # A start refused these only once the store was open.
        (["--cache", "redis://127.0.0.1:6379"], "--cache needs a shared store"),
        (["--store", "postgres://127.0.0.1:1/x", "--cache", "redis://h:notaport"], "bad port"),
        (["--encryption-keys", str(conf)], "encryption"),
        (["--idle-timeout", "soon"], "not a duration"),
    ]
    for args, says in bad:
        rc, out, err = _run(["check", "--data-dir", str(data), *args], tmp_path)
        assert rc == 2 and says.lower() in err.lower() and not out, (args, rc, out, err)
    assert not data.exists()

"""libsessiond-client as a developer gets it: `make install` into a temporary
DESTDIR (every file in its place, the shared library with its soname and
symlinks, the unit, the man pages), then examples/client/example.c compiled
through the installed pkg-config file (shared and static) and run against the
real daemon; `make uninstall` removes it all."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, SESSIOND_BIN, child_env, new_user

PREFIX = "/usr/local"


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{cmd}: exit {p.returncode}\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    run(["make", "-s", "install", f"DESTDIR={dest}", f"PREFIX={PREFIX}"], cwd=REPO)
    return dest, dest / PREFIX.lstrip("/")


def pc(root, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=str(root / "lib" / "pkgconfig"))
    return run(["pkg-config", f"--define-variable=prefix={root}", *args, "sessiond-client"], env=env).stdout.split()


def test_install_layout(installed):
    dest, root = installed
    for f in ("sbin/sessiond", "bin/sessionctl"):
        assert os.access(root / f, os.X_OK), f
    lib = root / "lib"
    assert (lib / "libsessiond-client.a").is_file()
    assert os.readlink(lib / "libsessiond-client.so") == "libsessiond-client.so.0"
    assert os.readlink(lib / "libsessiond-client.so.0") == "libsessiond-client.so.0.1.0"
    dyn = run(["readelf", "-dW", str(lib / "libsessiond-client.so.0.1.0")]).stdout
    assert "Library soname: [libsessiond-client.so.0]" in dyn
    # Only the public API is exported.
    syms = run(["nm", "-D", "--defined-only", str(lib / "libsessiond-client.so.0.1.0")]).stdout.split("\n")
    names = {ln.split()[-1].split("@")[0] for ln in syms if ln.strip() and " T " in ln}
    assert names and all(n.startswith("sd_client_") for n in names), names
    assert "sd_client_create" in names and "sd_client_user_events" in names
    assert (root / "include/sessiond/client.h").read_text() == (REPO / "client/include/sessiond/client.h").read_text()
    assert (root / "share/man/man1/sessionctl.1").is_file() and (root / "share/man/man8/sessiond.8").is_file()
    unit = (root / "lib/systemd/system/sessiond.service").read_text()
    assert f"ExecStart={PREFIX}/sbin/sessiond " in unit
    for line in ("DynamicUser=yes", "StateDirectory=sessiond", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "PrivateTmp=yes", "Restart=on-failure"):
        assert line in unit.splitlines(), line
    assert run([str(root / "bin/sessionctl"), "--version"]).stdout.startswith("sessionctl 0.1.0")


def test_pkg_config_file(installed):
    _, root = installed
    assert pc(root, "--modversion") == ["0.1.0"]
    flags = pc(root, "--cflags", "--libs")
    assert f"-I{root}/include" in flags and f"-L{root}/lib" in flags and "-lsessiond-client" in flags
    static = pc(root, "--static", "--libs")
    assert "-lcurl" in static and "-ljansson" in static and "-lcrypto" in static


def _example_output_ok(out):
    m = re.search(r"created (\S{22}) for example-user", out)
    assert m, out
    assert "valid=1 user=example-user" in out and "after revoke: valid=0" in out
    assert "revoke if at version 2: version mismatch (412)" in out, out
    assert re.search(r"\d+ active session\(s\)", out)
    assert "get after revoke: not found (404) (no active session with this id)" in out
    return m.group(1)


@pytest.mark.parametrize("link", ["shared", "static"])
def test_example_against_the_real_server(installed, server, tmp_path, link):
    _, root = installed
    exe = tmp_path / "example"
    src = str(REPO / "examples/client/example.c")
    if link == "shared":
        cmd = ["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", src, *pc(root, "--cflags", "--libs"),
               f"-Wl,-rpath,{root}/lib", "-o", str(exe)]
    else:
        # The archive, and its Requires.private (libcurl, jansson, libcrypto)
        # as shared libraries: Debian ships no static libcurl dependency chain.
        reqs = [r for r in pc(root, "--print-requires-private") if re.match(r"^[a-z]", r)]
        assert sorted(reqs) == ["jansson", "libcrypto", "libcurl"], reqs
        deps = run(["pkg-config", "--libs", *reqs]).stdout.split()
        cmd = ["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", src, *pc(root, "--cflags"),
               str(root / "lib/libsessiond-client.a"), *deps, "-o", str(exe)]
    run(cmd)
    ldd = run(["ldd", str(exe)]).stdout
    if link == "shared":
        assert f"{root}/lib/libsessiond-client.so.0" in ldd, ldd
    else:
        assert "libsessiond-client" not in ldd, ldd
    p = run([str(exe), server.url], env=child_env())
    sid = _example_output_ok(p.stdout)
    # What the example did is on the server: created, then revoked.
    ev = server.api.get(f"/sessions/{sid}/events", expect=200).json()["events"]
    assert [e["event"] for e in ev] == ["created", "revoked"]
    server.api.get(f"/sessions/{sid}", expect=404)
    # A server that is not there: a clear error, not a crash.
    p = subprocess.run([str(exe), "http://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "create: cannot connect to the server" in p.stderr, p.stderr


def test_man_pages(installed):
    _, root = installed
    help_text = run([SESSIOND_BIN, "--help"], env=child_env()).stdout
    options = set(re.findall(r"^  (--[a-z-]+)", help_text, re.M))
    page = (root / "share/man/man8/sessiond.8").read_text().replace("\\-", "-")
    missing = sorted(o for o in options if o not in page)
    assert not missing, f"sessiond.8 does not describe {missing} (see build/sessiond --help)"
    ctl_page = (root / "share/man/man1/sessionctl.1").read_text().replace("\\-", "-")
    for word in ("list", "show", "revoke-user", "bulk-revoke", "validate", "events", "stats", "jwt verify", "--json",
                 "--api-key-file", "--cacert", "--timeout", "--retry", "not-before", "revoke-matching",
                 "--dry-run", "--yes", "EXIT STATUS"):
        assert word in ctl_page, word
    if shutil.which("man"):
        for p in ("man1/sessionctl.1", "man8/sessiond.8"):
            r = subprocess.run(["man", "--warnings", "-l", str(root / "share/man" / p)], capture_output=True,
                               text=True, timeout=60, env=dict(os.environ, MANWIDTH="80"))
            assert r.returncode == 0 and not r.stderr.strip(), f"{p}: {r.stderr}"


def test_systemd_unit_verifies(installed, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    _, root = installed
    unit = tmp_path / "sessiond.service"
    text = (root / "lib/systemd/system/sessiond.service").read_text()
    # A reload checks the configuration first (sessiond check), then signals.
    assert f"ExecReload={PREFIX}/sbin/sessiond check " in text and "ExecReload=/bin/kill -HUP $MAINPID" in text
    unit.write_text(text.replace(f"={PREFIX}/sbin/sessiond", f"={root}/sbin/sessiond"))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                       timeout=120)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == 0 and not problems, problems


def test_uninstall_removes_everything(tmp_path):
    dest = tmp_path / "d"
    run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/opt/sd"], cwd=REPO)
    assert "prefix=/opt/sd" in (dest / "opt/sd/lib/pkgconfig/sessiond-client.pc").read_text()
    run(["make", "-s", "uninstall", f"DESTDIR={dest}", "PREFIX=/opt/sd"], cwd=REPO)
    left = [p for p in dest.rglob("*") if not p.is_dir()]
    assert not left, left


@pytest.fixture(scope="module")
def check_client(installed, tmp_path_factory):
    """tests/client/check_client.c built against the installed library."""
    _, root = installed
    exe = tmp_path_factory.mktemp("check") / "check_client"
    run(["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", str(REPO / "tests/client/check_client.c"),
         *pc(root, "--cflags", "--libs"), f"-Wl,-rpath,{root}/lib", "-o", str(exe)])

    def step(url, *args):
        out = run([str(exe), url, *map(str, args)], env=child_env()).stdout
        return dict(w.split("=", 1) for w in out.split())
    return step


def _instant(text):
    from datetime import datetime
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def test_create_with_lifetime(check_client, make_server):
    srv = make_server("--absolute-timeout", "1h", "--max-absolute-timeout", "30d")
    for asked, got in ((600, 600), (7 * 86400, 7 * 86400), (90 * 86400, 30 * 86400)):
        r = check_client(srv.url, "lifetime", asked)
        assert r["rc"] == "0", r
        assert _instant(r["absolute_expiry"]) - _instant(r["created_at"]) == pytest.approx(got, abs=1), (asked, r)
    # Without one, the server's --absolute-timeout.
    r = check_client(srv.url, "lifetime", 0)
    assert _instant(r["absolute_expiry"]) - _instant(r["created_at"]) == pytest.approx(3600, abs=1), r


@pytest.mark.no_prism("faults are injected into the server, not the contract")
def test_reads_retried_after_503_writes_never(check_client, make_server):
    srv = make_server(env={"SESSIOND_STORE_FAULTS": "get_by_token=fail*4,create=fail*1"})
    if "injecting faults" not in srv.log_text():
        pytest.skip("the release build has no store fault hook (the sanitizer build does)")
    # A write is never sent again: the 503 comes back as it was.
    assert check_client(srv.url, "create", 5, 10000) == {"rc": "-15", "retries": "0", "status": "503"}
    # Retries off (the default): the first 503 stands.
    assert check_client(srv.url, "validate", 0, 0) == {"rc": "-15", "valid": "-1", "retries": "0", "status": "503"}
    # The server asks for 1 s (Retry-After: 1), more than the 500 ms allowed:
    # the 503 is answered at once, no retry slept.
    assert check_client(srv.url, "validate", 5, 500) == {"rc": "-15", "valid": "-1", "retries": "0",
                                                         "status": "503"}
    # Two faults left: two retries, each after the 1 s asked, then valid.
    assert check_client(srv.url, "validate", 5, 10000) == {"rc": "0", "valid": "1", "retries": "2", "status": "200"}
    # Faults spent: no retry needed.
    assert check_client(srv.url, "validate", 5, 10000)["retries"] == "0"


def test_retries_when_nothing_listens(check_client):
    # Port 1 on loopback refuses every connection. Two retries allowed, after
    # backoffs of at most 100 and 200 ms: both are made, then the failure.
    r = check_client("http://127.0.0.1:1", "health", 2, 10000)
    assert r == {"rc": "-3", "retries": "2", "status": "0"}, r
    # With retries off, none.
    assert check_client("http://127.0.0.1:1", "health", 0, 0)["retries"] == "0"


def test_self_service_calls(check_client, server):
    r = check_client(server.url, "me", new_user("lib-me"))
    assert r["listed"] == "3" and r["current"] == "1" and r["user_ok"] == "1" and r["version"] == "1", r
    assert r["stale"] == "-13", "a sign-out on a version the session is not at: 412"
    assert r["revoked"] == "0" and r["again"] == "-11", r
    assert r["others"] == "0" and r["deleted"] == "1" and r["third_valid"] == "0", r


def test_access_token(check_client, make_server, tmp_path):
    key = run([SESSIOND_BIN, "jwk", "generate"], env=child_env()).stdout
    keys = tmp_path / "jwt-keys"
    keys.write_text(key)
    keys.chmod(0o600)
    srv = make_server("--jwt-keys", str(keys), "--jwt-lifetime", "2m")
    assert check_client(srv.url, "access", new_user("lib-jwt")) == {"rc": "0", "jwt_parts": "3",
                                                                     "expires_in": "120"}
    # A server that mints none: a clear refusal, not a crash.
    r = check_client(make_server().url, "access", new_user("lib-jwt"))
    assert r["rc"] == "-11" and r["jwt_parts"] == "0", r  # 404: no access tokens here

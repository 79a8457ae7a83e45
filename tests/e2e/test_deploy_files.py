"""The deployment files (Dockerfile, deploy/k8s/, deploy/systemd/, and the
HA topology's deploy/haproxy/, deploy/patroni/, deploy/etcd/, deploy/redis/) checked
for what can be checked without a cluster or an image registry: the YAML
parses and holds the fields that matter (probes on /healthz and /readyz,
resources, selectors that match the pods, the HPA aimed at the Deployment,
env names sessiond knows, secret references that resolve, the image's user),
the Dockerfile's stages, non-root user, port and runtime libraries (the
shared libraries the built binary needs map to packages the final stage
installs). The systemd unit is verified by test_client_lib.py
(systemd-analyze verify on the installed unit); here only its PostgreSQL
readiness. The HA files: both haproxy configurations pass `haproxy -c`,
Patroni's file passes `patroni --validate-config` (listening addresses made
local) and keeps synchronous mode, etcd's matches Patroni's host list, and
redis-server and redis-sentinel run with theirs (briefly, on loopback, by
PID) and report the settings docs/architecture.md relies on. Nothing is
built or pulled.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import REPO, SESSIOND_BIN, free_port

K8S = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "Dockerfile"


def _docs():
    out = {}
    for p in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(p.read_text()):
            assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), f"{p.name}: {d!r:.200}"
            if d["kind"] != "Kustomization":
                assert d["metadata"]["name"], p.name
            out.setdefault(d["kind"], []).append(d)
    return out


@pytest.fixture(scope="module")
def k8s():
    return _docs()


def _one(k8s, kind):
    assert len(k8s.get(kind, [])) == 1, f"want exactly one {kind} in deploy/k8s"
    return k8s[kind][0]


def _matches(selector, labels):
    return selector and all(labels.get(k) == v for k, v in selector.items())


def _known_env():
    out = subprocess.run([SESSIOND_BIN, "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"env (SESSIOND_[A-Z_]+)", out))


def _stages():
    """[(base image, name, [instructions])] of the Dockerfile."""
    stages = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            stages.append((m.group(1), m.group(2), []))
        else:
            assert stages, "instruction before FROM"
            stages[-1][2].append((word.upper(), rest.strip()))
    return stages


def test_every_manifest_parses_and_kustomization_lists_them(k8s):
    listed = set(_one(k8s, "Kustomization")["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret"):
        _one(k8s, kind)


def test_deployment_probes_resources_and_security(k8s):
    dep = _one(k8s, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert _matches(dep["spec"]["selector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"])
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in ("http", 8080)
    for part in ("requests", "limits"):
        assert set(c["resources"][part]) >= {"cpu", "memory"}, part
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # sessiond drains in --shutdown-timeout (10 s); the pod must give it that.
    assert pod["terminationGracePeriodSeconds"] > 10


def test_deployment_env_is_sessiond_options_and_secrets_resolve(k8s):
    if not Path(SESSIOND_BIN).exists():
        pytest.skip(f"{SESSIOND_BIN} not built")
    dep, secret = _one(k8s, "Deployment"), _one(k8s, "Secret")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    known = _known_env()
    env = {e["name"]: e for e in c["env"]}
    for name, e in env.items():
        if name.startswith("SESSIOND_"):
            assert name in known, f"{name} is not an option of sessiond --help"
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys, e
    assert env["SESSIOND_LISTEN"]["value"].endswith(":8080")
    # Beyond loopback sessiond needs API keys; the key file comes from the Secret.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(vols)
    keyfile = env["SESSIOND_API_KEYS"]["value"]
    (vol,) = [n for n, path in mounts.items() if keyfile.startswith(path + "/")]
    sec = vols[vol]["secret"]
    assert sec["secretName"] == secret["metadata"]["name"]
    assert any(i["key"] in keys and keyfile.endswith("/" + i["path"]) for i in sec["items"])
    assert mounts["data"] == env["SESSIOND_DATA_DIR"]["value"]
    # The password never sits in the connection string (sessiond logs host/port/db only).
    netloc = urlsplit(secret["stringData"]["store-url"]).netloc
    assert "@" in netloc and ":" not in netloc.rsplit("@", 1)[0], "user only, password via PGPASSWORD"


def test_service_pdb_and_hpa_point_at_the_deployment(k8s):
    dep = _one(k8s, "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc, pdb, hpa = _one(k8s, "Service"), _one(k8s, "PodDisruptionBudget"), _one(k8s, "HorizontalPodAutoscaler")
    assert _matches(svc["spec"]["selector"], labels)
    assert svc["spec"]["ports"][0]["targetPort"] in ("http", 8080)
    assert _matches(pdb["spec"]["selector"]["matchLabels"], labels)
    assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"])
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", dep["metadata"]["name"])
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert 2 <= hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    # The PDB must leave room to evict: at least one pod may go at the smallest size.
    max_unavailable = pdb["spec"].get("maxUnavailable", hpa["spec"]["minReplicas"] - pdb["spec"].get("minAvailable", 0))
    assert max_unavailable >= 1
    assert any(m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"]), "CPU needs the resource requests"


def test_dockerfile_stages_user_and_port(k8s):
    stages = _stages()
    assert len(stages) >= 2, "multi-stage"
    for base, _, _ in stages:
        assert base in ("debian:12-slim", "debian:bookworm-slim"), base
    final = stages[-1][2]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("EXPOSE", "8080") in final
    assert any(w == "VOLUME" and "/var/lib/sessiond" in r for w, r in final)
    assert any(w == "COPY" and r.startswith("--from=") for w, r in final)
    # The Deployment runs as the image's user.
    uid = int(users[-1].split(":")[0])
    assert _one(k8s, "Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def _final_packages():
    pkgs = set()
    for word, rest in _stages()[-1][2]:
        if word == "RUN" and "apt-get install" in rest:
            tail = rest.split("apt-get install", 1)[1].split("&&")[0]
            pkgs |= {w for w in tail.split() if not w.startswith("-")}
    return pkgs


def test_final_stage_installs_exactly_runtime_libraries():
    pkgs = _final_packages()
    assert pkgs, "the final stage installs its runtime libraries"
    assert not [p for p in pkgs if p.endswith("-dev") or p in ("gcc", "make", "pkg-config")], pkgs
    if not Path(SESSIOND_BIN).exists() or not shutil.which("readelf") or not shutil.which("dpkg"):
        pytest.skip("needs the built binary, readelf and dpkg")
    dyn = subprocess.run(["readelf", "-d", SESSIOND_BIN], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    assert needed
    ldd = subprocess.run(["ldd", SESSIOND_BIN], capture_output=True, text=True).stdout
    resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    for lib in needed:
        if "asan" in lib or "ubsan" in lib:
            continue  # the sanitizer build's runtime; the image holds the release build
        # The owner of the library the binary loads (its directory as ldd
        # resolves it), so a same-named library of another architecture
        # (libc6-i386's /lib32/libm.so.6) is not taken for it.
        owners = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True,
                                text=True).stdout.splitlines()
        arch_dir = os.path.basename(os.path.dirname(resolved.get(lib, "")))
        mine = [o for o in owners if arch_dir and o.endswith(f"/{arch_dir}/{lib}")]
        pkg = (mine or owners or [""])[0].split(":")[0].strip()
        assert pkg, f"no package owns {lib}"
        # glibc is in every Debian image (essential packages depend on it).
        assert pkg in pkgs or pkg == "libc6", f"{lib} ({pkg}) is not installed by the final stage"


def test_systemd_unit_waits_for_the_network_and_keeps_retrying():
    """With --store postgres://... the database may be unreachable at boot:
    sessiond then exits, and systemd must keep restarting it."""
    unit = (REPO / "deploy" / "systemd" / "sessiond.service").read_text()
    assert re.search(r"^After=.*\bnetwork-online\.target", unit, re.M)
    assert re.search(r"^Wants=.*\bnetwork-online\.target", unit, re.M)
    assert "StartLimitIntervalSec=0" in unit and "Restart=on-failure" in unit


def test_deployment_doc_explains_every_file():
    doc = (REPO / "docs" / "deployment.md").read_text()
    for p in [DOCKERFILE, *K8S.glob("*.yaml"), REPO / "deploy" / "systemd" / "sessiond.service", *HA_FILES]:
        assert p.relative_to(REPO).as_posix() in doc, f"docs/deployment.md does not mention {p.name}"


# -- the HA topology's files (docs/deployment.md, "The HA topology") ----------
HA_FILES = [REPO / "deploy" / p for p in ("haproxy/sessiond.cfg", "haproxy/patroni.cfg", "patroni/patroni.yml",
                                          "etcd/etcd.env", "redis/redis.conf", "redis/sentinel.conf")]


def test_haproxy_configurations_are_valid():
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("haproxy not installed (scripts/install-deps.sh test)")
    for cfg in (REPO / "deploy" / "haproxy").glob("*.cfg"):
        r = subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"{cfg.name}: {r.stdout}{r.stderr}"
    front = (REPO / "deploy" / "haproxy" / "sessiond.cfg").read_text()
    assert "option httpchk GET /readyz" in front and "option redispatch" in front


def _patroni_yml():
    return yaml.safe_load((REPO / "deploy" / "patroni" / "patroni.yml").read_text())


def test_patroni_configuration_validates_and_keeps_acknowledged_writes(tmp_path):
    conf = _patroni_yml()
    dcs = conf["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True and dcs["postgresql"]["parameters"]["synchronous_commit"] == "on"
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"], "Patroni's rule for its timings"
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert conf["postgresql"]["remove_data_directory_on_rewind_failure"] is True
    assert len(conf["etcd3"]["hosts"].split(",")) >= 3
    # haproxy checks each member's REST port for /primary.
    cfg = (REPO / "deploy" / "haproxy" / "patroni.cfg").read_text()
    assert f"check port {conf['restapi']['listen'].rsplit(':', 1)[1]}" in cfg
    patroni = shutil.which("patroni")
    if not patroni:
        pytest.skip("patroni not installed (scripts/install-deps.sh test)")
    # Patroni's own validator, the listening addresses made local and free
    # (it refuses a port something answers on; connect addresses stay).
    text = (REPO / "deploy" / "patroni" / "patroni.yml").read_text()
    for listen in (conf["restapi"]["listen"], conf["postgresql"]["listen"]):
        text = text.replace(f"  listen: {listen}", f"  listen: 127.0.0.1:{free_port()}", 1)
    (tmp_path / "patroni.yml").write_text(text)
    r = subprocess.run([patroni, "--validate-config", str(tmp_path / "patroni.yml")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_etcd_environment_matches_patroni():
    env = dict(re.findall(r'^(ETCD_[A-Z_]+)="([^"]*)"', (REPO / "deploy" / "etcd" / "etcd.env").read_text(), re.M))
    members = dict(m.split("=", 1) for m in env["ETCD_INITIAL_CLUSTER"].split(","))
    assert len(members) % 2 == 1 and len(members) >= 3, "an odd number, three or more"
    assert members[env["ETCD_NAME"]] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"]
    client = urlsplit(env["ETCD_ADVERTISE_CLIENT_URLS"]).netloc
    assert client in _patroni_yml()["etcd3"]["hosts"].split(",")


def test_redis_and_sentinel_configurations_run_as_documented(tmp_path):
    import redisserver
    import sentinelserver
    if not sentinelserver.available():
        pytest.skip("redis-server or redis-sentinel not installed (scripts/install-deps.sh test)")
    redis_conf = REPO / "deploy" / "redis" / "redis.conf"
    password = re.search(r"^requirepass (\S+)", redis_conf.read_text(), re.M).group(1)
    port = free_port()
    node = subprocess.Popen([redisserver.REDIS_BIN, str(redis_conf), "--bind", "127.0.0.1", "--port", str(port),
                             "--dir", str(tmp_path), "--daemonize", "no", "--logfile", str(tmp_path / "redis.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sentinel = None
    try:
        def cfg(name):
            return redisserver.command(port, "CONFIG", "GET", name, password=password)[1].decode()
        sentinelserver._wait(lambda: redisserver.command(port, "PING", password=password) == "PONG", 15,
                             "redis-server with deploy/redis/redis.conf")
        assert (cfg("save"), cfg("appendonly"), cfg("maxmemory-policy")) == ("", "no", "noeviction")
        assert (cfg("min-replicas-to-write"), cfg("min-replicas-max-lag")) == ("1", "10")
        # Sentinel on a copy (it rewrites its file) aimed at that node.
        text = (REPO / "deploy" / "redis" / "sentinel.conf").read_text()
        m = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", text, re.M)
        name, quorum = m.group(1), int(m.group(4))
        sport = free_port()
        text = re.sub(r"^bind .*$", "bind 127.0.0.1", text, flags=re.M)
        text = re.sub(r"^port .*$", f"port {sport}", text, flags=re.M)
        text = text.replace(m.group(0), f"sentinel monitor {name} 127.0.0.1 {port} {quorum}")
        (tmp_path / "sentinel.conf").write_text(text + f"dir {tmp_path}\n")
        sentinel = subprocess.Popen([sentinelserver.SENTINEL_BIN, str(tmp_path / "sentinel.conf")],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def master():
            r = redisserver.command(sport, "SENTINEL", "master", name)
            return {k.decode(): v.decode() for k, v in zip(r[::2], r[1::2])}
        sentinelserver._wait(lambda: master()["flags"] == "master", 15, "Sentinel to log in to the master")
        got = master()
        assert (got["quorum"], got["down-after-milliseconds"]) == (str(quorum), "5000")
        assert quorum == 2 and name == "sessiond-cache"
    finally:
        redisserver.terminate(sentinel)
        redisserver.terminate(node)

#!/bin/sh
# Installs the Debian 12 packages sessiond needs to build, run and test.
# Idempotent and non-interactive: it only calls apt-get when a package is missing.
# Usage: scripts/install-deps.sh [build|test|scale|bench]   (default: build)
set -eu

build_pkgs="gcc make pkg-config libhttp-parser-dev libsqlite3-dev libjansson-dev libssl-dev libcurl4-openssl-dev xxd libpq-dev"
build_pkgs="$build_pkgs libhiredis-dev" # the Redis cache tier (--cache redis://...)
build_pkgs="$build_pkgs libjemalloc-dev" # the server's allocator (docs/dependencies.md)
test_pkgs="libcmocka-dev python3 python3-pytest python3-requests python3-yaml sqlite3 curl nginx-light chromium"
# promtool (Prometheus conventions: tests/e2e/test_prometheus.py)
test_pkgs="$test_pkgs prometheus"
test_pkgs="$test_pkgs clang" # libFuzzer harnesses (make fuzz, fuzz-smoke in make test)
test_pkgs="$test_pkgs postgresql-15 postgresql-client-15" # make e2e-postgres (tests/e2e/pgserver.py)
test_pkgs="$test_pkgs redis-server" # tests/e2e/test_cache.py starts a private Redis
test_pkgs="$test_pkgs python3-cryptography" # tests/e2e/test_jwt_verify.py signs the hostile tokens
test_pkgs="$test_pkgs redis-sentinel" # tests/e2e/test_sentinel.py: a master, a replica, three Sentinels
# The TLS tests make certificates and run s_client with the openssl CLI.
test_pkgs="$test_pkgs openssl"
# Replicas behind a load balancer (tests/e2e/test_replicas.py, make scale-demo).
test_pkgs="$test_pkgs haproxy"
# The second gateway of tests/e2e/test_forward_auth.py (examples/caddy-forward-auth.Caddyfile).
test_pkgs="$test_pkgs caddy"
# PostgreSQL under Patroni (tests/e2e/test_patroni.py): three etcd members and
# two Patroni members, started by the test on free ports (not as services).
test_pkgs="$test_pkgs patroni etcd-server"

# make scale-demo: PostgreSQL and haproxy on loopback (scripts/scale-demo.py).
scale_pkgs="python3 postgresql-15 postgresql-client-15 haproxy redis-server"

bench_pkgs="wrk nginx-light redis-server redis-tools"
# the scale-out rows: a private PostgreSQL (tests/e2e/pgserver.py)
bench_pkgs="$bench_pkgs postgresql-15 postgresql-client-15"

want="$build_pkgs"
case "${1:-build}" in
test)
	want="$build_pkgs $test_pkgs"
	# Node.js for the OpenAPI tooling (tools/api) and the console's browser tests
	# (playwright-core): the machine's own if it has one.
	command -v npm >/dev/null 2>&1 || want="$want nodejs npm"
	;;
scale)
	want="$build_pkgs $scale_pkgs"
	;;
bench)
	want="$build_pkgs $bench_pkgs"
	# Node.js for the express-session peer: the machine's own if it has one.
	command -v npm >/dev/null 2>&1 || want="$want nodejs npm"
	;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (a parallel install) instead of failing.
APT="apt-get -o DPkg::Lock::Timeout=600"
$SUDO $APT update -qq
# shellcheck disable=SC2086
$SUDO $APT install -y -qq --no-install-recommends $missing

# Services that installing a test package enables and may start (etcd on
# 2379/2380, patroni, nginx and caddy on 80, Redis on 6379, Sentinel on
# 26379, PostgreSQL on 5432, haproxy, Prometheus on 9090): the tests and
# benchmarks run their own on free ports, so stop and
# disable the packaged ones, only when this run installed them (a machine
# that already ran them keeps them). Under systemd through systemctl; without
# it (containers, CI) through the init script and update-rc.d, and systemctl
# offline so that a later boot under systemd does not start them either.
for pair in etcd-server:etcd patroni:patroni nginx-light:nginx caddy:caddy redis-server:redis-server \
	redis-sentinel:redis-sentinel postgresql-15:postgresql haproxy:haproxy prometheus:prometheus; do
	case " $missing " in *" ${pair%%:*} "*) ;; *) continue ;; esac
	svc=${pair#*:}
	if [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
	else
		if [ -x "/etc/init.d/$svc" ]; then
			$SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
			$SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
		if command -v systemctl >/dev/null 2>&1; then
			$SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
		fi
	fi
done

# sessiond - build, test and run. See README.md.
#
#   make          build build/sessiond (installs missing Debian packages first)
#   make run      build and start on 127.0.0.1:8080 with the store in ./var
#                 (make run LISTEN=127.0.0.1:9090 DATA=./var2 for another)
#   make test     unit + end-to-end tests, under ASan+UBSan and on the release build
#   make asan     build/asan/sessiond, the sanitizer build
#   make format   clang-format every C file; make format-check fails on a diff

VERSION := 0.1.0
CC      ?= cc
PKGS    := jansson sqlite3 libcrypto libssl libpq hiredis libcurl
PYTHON  := /usr/bin/python3

# Recursively expanded on purpose: pkg-config runs when a recipe needs it,
# after the deps step has installed the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lhttp_parser -lpthread -lm

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
BASE    := -std=c17 -D_GNU_SOURCE -DSD_VERSION=\"$(VERSION)\" -Isrc $(WARN)
CFLAGS_REL  = $(BASE) -O2 -g $(PKG_CFLAGS)
CFLAGS_ASAN = $(BASE) -DSD_STORE_FAULTS -DSD_ALLOC_FAULTS -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined $(PKG_CFLAGS)
# Allocation-failure injection (src/util/allocfail.h): the sanitizer build's
# own calls go through its counting hook.
LDFLAGS_ASAN := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup,--wrap=getline

SRCS     := $(wildcard src/*.c src/*/*.c)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
REL_OBJS := $(patsubst src/%.c,build/obj/%.o,$(SRCS))
ASAN_OBJS:= $(patsubst src/%.c,build/asan/obj/%.o,$(SRCS))
ASAN_LIB := $(patsubst src/%.c,build/asan/obj/%.o,$(LIB_SRCS))
UNIT_SRCS:= $(wildcard tests/unit/test_*.c)
UNIT_BINS:= $(patsubst tests/unit/%.c,build/asan/tests/%,$(UNIT_SRCS))
DEPS_STAMP := build/.deps-build
# The operator console (console/) and the self-service page (account/),
# compiled into the binary as generated C.
CONSOLE_FILES := $(sort $(wildcard console/*)) $(sort $(wildcard account/*))
CONSOLE_GEN   := build/gen/console_assets.c
REL_OBJS  += build/obj/gen/console_assets.o
ASAN_OBJS += build/asan/obj/gen/console_assets.o
ASAN_LIB  += build/asan/obj/gen/console_assets.o
# The console's browser tests (playwright-core from npm, driving Debian's chromium)
# and the OAuth client library test_api_keys.py introspects with (oauth4webapi).
BROWSER_STAMP := build/.deps-browser
# The independent JWT verifier tests/e2e/test_jwt.py runs (panva/jose from npm).
JWT_STAMP := build/.deps-jwt
TEST_STAMP := build/.deps-test

.PHONY: install uninstall FORCE
.PHONY: all deps deps-test deps-browser run test unit e2e asan bench bench-quick format format-check clean

all: build/sessiond
all: build/sessionctl build/libsessiond-client.a build/libsessiond-client.so build/sessiond-client.pc

$(DEPS_STAMP): scripts/install-deps.sh
	@mkdir -p build
	scripts/install-deps.sh build
	@touch $@

$(TEST_STAMP): scripts/install-deps.sh
	@mkdir -p build
	scripts/install-deps.sh test
	@touch $@

deps: $(DEPS_STAMP)
deps-test: $(TEST_STAMP)
deps-browser: $(BROWSER_STAMP) $(JWT_STAMP)

build/obj/%.o: src/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CFLAGS_REL) -MMD -MP -c $< -o $@

build/asan/obj/%.o: src/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC (asan) $<"; $(CC) $(CFLAGS_ASAN) -MMD -MP -c $< -o $@

$(CONSOLE_GEN): scripts/embed-console.sh $(CONSOLE_FILES) console account | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "GEN $@"; scripts/embed-console.sh $@ $(CONSOLE_FILES)

build/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CFLAGS_REL) -MMD -MP -c $< -o $@

build/asan/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	@echo "CC (asan) $<"; $(CC) $(CFLAGS_ASAN) -MMD -MP -c $< -o $@

$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json | $(TEST_STAMP)
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(JWT_STAMP): tests/jwt/package.json tests/jwt/package-lock.json | $(TEST_STAMP)
	cd tests/jwt && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The server allocates through jemalloc: durable updates +4-11 %, creates
# +3-4 % over glibc's malloc (docs/performance.md). The sanitizer build keeps
# ASan's allocator.
build/sessiond: $(REL_OBJS)
	@echo "LD $@"; $(CC) $(CFLAGS_REL) -o $@ $^ $(PKG_LIBS) -ljemalloc

build/asan/sessiond: $(ASAN_OBJS)
	@echo "LD $@"; $(CC) $(CFLAGS_ASAN) $(LDFLAGS_ASAN) -o $@ $^ $(PKG_LIBS)

build/asan/tests/%: tests/unit/%.c $(ASAN_LIB) | $(TEST_STAMP)
	@mkdir -p $(dir $@)
	@echo "LD $@"; $(CC) $(CFLAGS_ASAN) $(LDFLAGS_ASAN) -o $@ $< $(ASAN_LIB) $(PKG_LIBS) -lcmocka

asan: build/asan/sessiond

# make run LISTEN=127.0.0.1:9090 DATA=./var2 runs a second one beside the first
# (the data directory is locked by the server using it). SESSIOND_LISTEN and
# SESSIOND_DATA_DIR in the environment count too; a variable on the command
# line wins.
LISTEN ?= $(or $(SESSIOND_LISTEN),127.0.0.1:8080)
DATA   ?= $(or $(SESSIOND_DATA_DIR),./var)
run: build/sessiond build/sessionctl
	@mkdir -p '$(DATA)'
	exec build/sessiond --listen '$(LISTEN)' --data-dir '$(DATA)'

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# The end-to-end suite runs twice: against the sanitizer build (catches
# memory errors on every path the tests drive) and the release build.
e2e: build/sessiond build/asan/sessiond | $(TEST_STAMP) $(BROWSER_STAMP) $(JWT_STAMP)
	SESSIOND_BIN=$(CURDIR)/build/asan/sessiond ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e
	SESSIOND_BIN=$(CURDIR)/build/sessiond $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

test: unit e2e e2e-postgres e2e-cache

# The API suite once more against the PostgreSQL backend (release build): the
# harness starts a private PostgreSQL 15 as the postgres user on a loopback
# port and gives every sessiond its own database (tests/e2e/pgserver.py).
PG_SUITE := test_sessions test_validate test_users test_rotation test_audit test_binding \
            test_concurrency test_durability test_throttle test_encryption test_api_keys \
            test_forward_auth test_fail_closed test_postgres test_identifiers test_write_conformance test_jwt \
            test_self_service test_incident test_jwt_reuse
.PHONY: e2e-postgres
e2e-postgres: build/sessiond | $(TEST_STAMP) $(BROWSER_STAMP) $(JWT_STAMP)
	SESSIOND_TEST_STORE=postgres SESSIOND_BIN=$(CURDIR)/build/sessiond \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(patsubst %,tests/e2e/%.py,$(PG_SUITE))

# The validation-heavy API files once more with the Redis cache tier in front
# of PostgreSQL (--cache on a private Redis, tests/e2e/redisserver.py);
# tests/e2e/test_cache.py (in e2e) holds the cache's own failure tests.
CACHE_SUITE := test_sessions test_validate test_users test_rotation test_binding \
               test_forward_auth test_concurrency test_write_conformance test_self_service \
               test_incident
.PHONY: e2e-cache
e2e-cache: build/sessiond | $(TEST_STAMP)
	SESSIOND_TEST_STORE=postgres SESSIOND_TEST_CACHE=redis SESSIOND_BIN=$(CURDIR)/build/sessiond \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(patsubst %,tests/e2e/%.py,$(CACHE_SUITE))

# OpenAPI tooling (tools/api: Redocly CLI for lint, Prism for the validating
# proxy), versions pinned by package-lock.json; installed without prompts.
API_STAMP := tools/api/node_modules/.stamp
$(API_STAMP): tools/api/package.json tools/api/package-lock.json | $(TEST_STAMP)
	cd tools/api && CI=true npm ci --no-audit --no-fund </dev/null
	@touch $@

e2e: | $(API_STAMP)

# The API suite once more, on the release build, through Prism: every response
# (and every request the server accepts) must match docs/openapi.yaml.
PRISM_TESTS := tests/e2e/test_api_contract.py tests/e2e/test_sessions.py tests/e2e/test_validate.py \
               tests/e2e/test_users.py tests/e2e/test_rotation.py tests/e2e/test_api_keys.py \
               tests/e2e/test_identifiers.py tests/e2e/test_jwt.py tests/e2e/test_jwe.py \
               tests/e2e/test_self_service.py \
               tests/e2e/test_incident.py
.PHONY: e2e-prism
e2e-prism: build/sessiond | $(TEST_STAMP) $(API_STAMP) $(BROWSER_STAMP) $(JWT_STAMP)
	SESSIOND_VIA_PRISM=1 SESSIOND_BIN=$(CURDIR)/build/sessiond \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(PRISM_TESTS)

test: e2e-prism

# Benchmarks: never part of make test. Prints the table and writes
# bench/results/latest.md (see docs/performance.md).
bench: build/sessiond build/jwt_verify_bench
	scripts/install-deps.sh bench
	$(PYTHON) bench/bench.py

bench-quick: build/sessiond build/jwt_verify_bench
	scripts/install-deps.sh bench
	$(PYTHON) bench/bench.py --quick

# Offline JWT verifications per second of libsessiond-client, one thread
# (bench/jwt_verify_bench.c; issue 18's target: 20k/s per core). A row of
# make bench; never part of make test.
build/jwt_verify_bench: bench/jwt_verify_bench.c build/libsessiond-client.a
	@echo "LD $@"; $(CC) $(CLIENT_BASE) -O2 -g $(CLIENT_CFLAGS_PKG) -o $@ $< build/libsessiond-client.a $(CLIENT_LIBS)

.PHONY: jwt-verify-bench
jwt-verify-bench: build/jwt_verify_bench
	build/jwt_verify_bench --jwe

# Heap calls per request on the hot routes, on one warm keep-alive connection
# (bench/alloccount.c under LD_PRELOAD; issue 14). Never part of make test.
.PHONY: alloc-count
alloc-count: build/sessiond
	$(PYTHON) bench/alloc_per_request.py

# RSS added by 10,000 idle keep-alive connections to the release build
# (bench/idle_conns.py; issue 14). Never part of make test.
IDLE_CONNS ?= 10000
.PHONY: idle-conns
idle-conns: build/sessiond
	$(PYTHON) bench/idle_conns.py --conns $(IDLE_CONNS)

# kill -9 at depth (issue 17): the crash test's mixed load (creates at a
# per-user cap, updates, rotation, mfa renewal, deletes, user-wide
# revocations) for ROUNDS rounds on the release build; prints rounds,
# acknowledged writes, lost writes and revocations (both must be 0) and the
# slowest restart. crash-postgres: the same on a private PostgreSQL.
ROUNDS ?= 1000
.PHONY: crash crash-postgres
crash: build/sessiond | $(TEST_STAMP)
	SESSIOND_CRASH_ROUNDS=$(ROUNDS) SESSIOND_BIN=$(CURDIR)/build/sessiond \
	  $(PYTHON) -m pytest -q -s -p no:cacheprovider tests/e2e/test_crash.py
crash-postgres: build/sessiond | $(TEST_STAMP)
	SESSIOND_TEST_STORE=postgres SESSIOND_CRASH_ROUNDS=$(ROUNDS) SESSIOND_BIN=$(CURDIR)/build/sessiond \
	  $(PYTHON) -m pytest -q -s -p no:cacheprovider tests/e2e/test_crash.py

# The HA topology under fire (issue 16): three replicas behind haproxy on
# PostgreSQL under Patroni (through haproxy) and Redis under Sentinel, a
# mixed load for CHAOS_MINUTES while a replica, the Redis master, the
# PostgreSQL primary, a Sentinel and an etcd member are killed (SIGKILL) and
# restarted one at a time; prints the table of docs/reliability.md and fails
# if an acknowledged write was lost or a revoked session validated
# (bench/chaos.py; CHAOS_RATE requests/s, default 200). tests/e2e/test_chaos.py
# is the one-minute version in make test.
CHAOS_MINUTES ?= 5
.PHONY: chaos
chaos: build/sessiond | $(TEST_STAMP)
	CHAOS_MINUTES=$(CHAOS_MINUTES) SESSIOND_BIN=$(CURDIR)/build/sessiond $(PYTHON) bench/chaos.py

# A region failover on asynchronous streaming replication, on loopback
# (issue 16 item 5, docs/capacity.md): replication lag under the chaos load,
# then the primary lost under load and the standby promoted; prints the lag,
# the promotion and resumption times, acknowledged creates lost and
# revocations undone (bench/region_failover.py).
.PHONY: region-failover
region-failover: build/sessiond | $(TEST_STAMP)
	SESSIOND_BIN=$(CURDIR)/build/sessiond $(PYTHON) bench/region_failover.py

# Issue 13's write targets side by side: embedded durable creates (and the
# bytes written per create) vs Redis with appendfsync always, updates vs
# creates, PostgreSQL creates vs pgbench inserts (bench/write_compare.py).
.PHONY: write-compare
write-compare: build/sessiond
	scripts/install-deps.sh bench
	$(PYTHON) bench/write_compare.py

# An hour of steady mixed load sampling RSS and descriptors (SOAK_MINUTES):
# `make soak` on the embedded store, `make soak-postgres` on a private
# PostgreSQL with a private Redis cache in front (the scale-out mode).
SOAK_MINUTES ?= 60
.PHONY: soak soak-postgres
soak: build/sessiond
	scripts/install-deps.sh bench
	$(PYTHON) bench/soak.py --minutes $(SOAK_MINUTES)

soak-postgres: build/sessiond
	scripts/install-deps.sh bench
	$(PYTHON) bench/soak.py --minutes $(SOAK_MINUTES) --store postgres --cache

format:
	clang-format -i $(wildcard src/*.c src/*.h src/*/*.c src/*/*.h tests/unit/*.c \
	  fuzz/*.c fuzz/*.h client/*.c client/*.h client/include/sessiond/*.h cli/*.c cli/*.h examples/client/*.c \
	  tests/client/*.c)

format-check:
	@clang-format --dry-run --Werror $(wildcard src/*.c src/*.h src/*/*.c src/*/*.h tests/unit/*.c \
	  fuzz/*.c fuzz/*.h client/*.c client/*.h client/include/sessiond/*.h cli/*.c cli/*.h examples/client/*.c \
	  tests/client/*.c)

clean:
	rm -rf build

-include $(REL_OBJS:.o=.d) $(ASAN_OBJS:.o=.d)

# --------------------------------------------------------------------------
# libsessiond-client (client/), sessionctl (cli/), make install
# The client side links libcurl, jansson and libcrypto (JWT verification) only;
# it never sees src/.
# --------------------------------------------------------------------------
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SOMAJOR    := 0

CLIENT_PKGS  := libcurl jansson libcrypto
CLIENT_CFLAGS_PKG = $(shell pkg-config --cflags $(CLIENT_PKGS))
CLIENT_LIBS  = $(shell pkg-config --libs $(CLIENT_PKGS)) -lpthread
CLIENT_BASE  := -std=c17 -D_GNU_SOURCE -DSD_VERSION=\"$(VERSION)\" -Iclient/include $(WARN)
CLIENT_ASAN  := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined
CLIENT_SRCS  := $(wildcard client/*.c)
CLI_SRCS     := $(wildcard cli/*.c)
CLIENT_OBJS  := $(patsubst client/%.c,build/client/%.o,$(CLIENT_SRCS))
CLI_OBJS     := $(patsubst cli/%.c,build/cli/%.o,$(CLI_SRCS))
CLIENT_AOBJS := $(patsubst client/%.c,build/asan/client/%.o,$(CLIENT_SRCS))
CLI_AOBJS    := $(patsubst cli/%.c,build/asan/cli/%.o,$(CLI_SRCS))
CLIENT_SO    := build/libsessiond-client.so.$(VERSION)
CLIENT_ALL   := build/sessionctl build/asan/sessionctl build/libsessiond-client.a \
                build/libsessiond-client.so build/sessiond-client.pc

build/client/%.o: client/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CLIENT_BASE) -O2 -g -fPIC $(CLIENT_CFLAGS_PKG) -MMD -MP -c $< -o $@

build/cli/%.o: cli/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CLIENT_BASE) -O2 -g $(CLIENT_CFLAGS_PKG) -MMD -MP -c $< -o $@

build/asan/client/%.o: client/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC (asan) $<"; $(CC) $(CLIENT_BASE) $(CLIENT_ASAN) $(CLIENT_CFLAGS_PKG) \
	   -MMD -MP -c $< -o $@

build/asan/cli/%.o: cli/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC (asan) $<"; $(CC) $(CLIENT_BASE) $(CLIENT_ASAN) $(CLIENT_CFLAGS_PKG) \
	   -MMD -MP -c $< -o $@

# The end-to-end tests drive sessionctl (ASan and release) and the library.
e2e: $(CLIENT_ALL)

build/libsessiond-client.a: $(CLIENT_OBJS)
	@echo "AR $@"; rm -f $@; ar rcs $@ $^

$(CLIENT_SO): $(CLIENT_OBJS) client/libsessiond-client.map
	@echo "LD $@"; $(CC) -shared -Wl,-soname,libsessiond-client.so.$(SOMAJOR) \
	  -Wl,--version-script,client/libsessiond-client.map -Wl,-z,defs -o $@ $(CLIENT_OBJS) $(CLIENT_LIBS)

build/libsessiond-client.so: $(CLIENT_SO)
	ln -sf $(notdir $(CLIENT_SO)) build/libsessiond-client.so.$(SOMAJOR)
	ln -sf libsessiond-client.so.$(SOMAJOR) $@

build/sessionctl: $(CLI_OBJS) build/libsessiond-client.a
	@echo "LD $@"; $(CC) -o $@ $(CLI_OBJS) build/libsessiond-client.a $(CLIENT_LIBS)

build/asan/sessionctl: $(CLI_AOBJS) $(CLIENT_AOBJS)
	@echo "LD $@"; $(CC) -fsanitize=address,undefined -o $@ $^ $(CLIENT_LIBS)

# Regenerated whenever PREFIX (or the template) changes.
build/sessiond-client.pc: client/sessiond-client.pc.in FORCE
	@mkdir -p build
	@sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
	  -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
	  -e 's|@VERSION@|$(VERSION)|' $< > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

FORCE:

install: build/sessiond build/sessionctl build/libsessiond-client.a build/libsessiond-client.so \
         build/sessiond-client.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	  $(DESTDIR)$(INCLUDEDIR)/sessiond $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(UNITDIR)
	install -m 755 build/sessiond $(DESTDIR)$(SBINDIR)/sessiond
	install -m 755 build/sessionctl $(DESTDIR)$(BINDIR)/sessionctl
	install -m 644 build/libsessiond-client.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(CLIENT_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(CLIENT_SO)) $(DESTDIR)$(LIBDIR)/libsessiond-client.so.$(SOMAJOR)
	ln -sf libsessiond-client.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libsessiond-client.so
	install -m 644 client/include/sessiond/client.h $(DESTDIR)$(INCLUDEDIR)/sessiond/client.h
	install -m 644 build/sessiond-client.pc $(DESTDIR)$(LIBDIR)/pkgconfig/sessiond-client.pc
	install -m 644 man/sessionctl.1 $(DESTDIR)$(MANDIR)/man1/sessionctl.1
	install -m 644 man/sessiond.8 $(DESTDIR)$(MANDIR)/man8/sessiond.8
	sed 's|/usr/local/sbin/|$(SBINDIR)/|' deploy/systemd/sessiond.service \
	  > $(DESTDIR)$(UNITDIR)/sessiond.service
	chmod 644 $(DESTDIR)$(UNITDIR)/sessiond.service
	@# The dynamic loader's cache learns the new library (installs into a
	@# staging DESTDIR leave that to the package's own trigger).
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/sessiond $(DESTDIR)$(BINDIR)/sessionctl \
	  $(DESTDIR)$(LIBDIR)/libsessiond-client.a $(DESTDIR)$(LIBDIR)/$(notdir $(CLIENT_SO)) \
	  $(DESTDIR)$(LIBDIR)/libsessiond-client.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libsessiond-client.so \
	  $(DESTDIR)$(INCLUDEDIR)/sessiond/client.h $(DESTDIR)$(LIBDIR)/pkgconfig/sessiond-client.pc \
	  $(DESTDIR)$(MANDIR)/man1/sessionctl.1 $(DESTDIR)$(MANDIR)/man8/sessiond.8 \
	  $(DESTDIR)$(UNITDIR)/sessiond.service
	-rmdir $(DESTDIR)$(INCLUDEDIR)/sessiond

-include $(CLIENT_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(CLIENT_AOBJS:.o=.d) $(CLI_AOBJS:.o=.d)

# ---- fuzzing (libFuzzer, clang from Debian) -----------------------------
#   make fuzz              each target for FUZZ_SECONDS (default 300), corpus kept in build/fuzz/corpus
#   make fuzz-smoke        each target for FUZZ_SMOKE_SECONDS (default 20): part of make test
#   make fuzz-long         each target, one after another, until FUZZ_RUNS executions
#                          (default 10,000,000; -1: no limit) or FUZZ_LONG_SECONDS
#                          (default 0: no limit), whichever comes first; the log of
#                          each, with -print_final_stats, in build/fuzz/<target>.long.log.
#                          Executions add up across runs on the same working corpus,
#                          so a campaign can be spread over sessions; on a shared
#                          machine run it as `nice -n 19 make fuzz-long`.
#   make fuzz-merge        minimise fuzz/corpus/<target> + build/fuzz/corpus/<target>
#                          into fuzz/corpus/<target> (libFuzzer -merge=1); seeds with
#                          a name (regress-*, crash-*, anything not a SHA-1) are kept
# Seeds live in fuzz/corpus/<target>/; findings are written to build/fuzz/.
FUZZ_CC      := clang
FUZZ_TARGETS := fuzz_http fuzz_bodies fuzz_router fuzz_text fuzz_files fuzz_jwks fuzz_pgconn
FUZZ_BINS    := $(patsubst %,build/fuzz/%,$(FUZZ_TARGETS))
FUZZ_OBJS    := $(patsubst src/%.c,build/fuzz/obj/%.o,$(LIB_SRCS)) build/fuzz/obj/gen/console_assets.o
# Kept after a build (pattern-rule intermediates are otherwise deleted, and
# the next make, which reads their .d files, compiles them all again).
.SECONDARY: $(FUZZ_OBJS)
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_RUNS    ?= 10000000
FUZZ_LONG_SECONDS ?= 0
CFLAGS_FUZZ   = $(BASE) -O1 -g -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer $(PKG_CFLAGS)
.PHONY: fuzz fuzz-smoke fuzz-long fuzz-merge fuzz-build

build/fuzz/obj/%.o: src/%.c | $(TEST_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC (fuzz) $<"; $(FUZZ_CC) $(CFLAGS_FUZZ) -MMD -MP -c $< -o $@

build/fuzz/obj/gen/%.o: build/gen/%.c | $(TEST_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC (fuzz) $<"; $(FUZZ_CC) $(CFLAGS_FUZZ) -c $< -o $@

build/fuzz/%: fuzz/%.c fuzz/policy.h $(FUZZ_OBJS) | $(TEST_STAMP)
	@mkdir -p $(dir $@)
	@echo "LD $@"; $(FUZZ_CC) $(CFLAGS_FUZZ) -Ifuzz -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) $(PKG_LIBS)

fuzz-build: $(FUZZ_BINS)

# Runs every target for $(1) seconds on a working corpus seeded from the
# tree; stops at the first crash (its input is left in build/fuzz/).
define run_fuzzers
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t; \
	  echo "== $$t ($(1) s)"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp \
	    build/fuzz/$$t -max_total_time=$(1) \
	    -artifact_prefix=build/fuzz/$$t- -print_final_stats=1 -max_len=16384 \
	    build/fuzz/corpus/$$t fuzz/corpus/$$t 2>build/fuzz/$$t.log || \
	    { tail -60 build/fuzz/$$t.log; exit 1; }; \
	  grep -E "stat::number_of_executed_units|cov: " build/fuzz/$$t.log | tail -2; \
	done
endef

fuzz: fuzz-build
	$(call run_fuzzers,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call run_fuzzers,$(FUZZ_SMOKE_SECONDS))

# The same run as run_fuzzers, bounded by executions as well as time, each
# target's log kept apart from the short runs'. The server's own log lines
# (they start with the date) are left out: fuzz_http's warnings alone came to
# 2.6 GB in 10 million executions.
fuzz-long: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t; \
	  echo "== $$t (runs $(FUZZ_RUNS), seconds $(FUZZ_LONG_SECONDS))"; date -u +%FT%TZ; \
	  { ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp \
	    build/fuzz/$$t -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_LONG_SECONDS) \
	    -artifact_prefix=build/fuzz/$$t- -print_final_stats=1 -max_len=16384 \
	    build/fuzz/corpus/$$t fuzz/corpus/$$t 2>&1 >/dev/null; echo $$? >build/fuzz/$$t.long.rc; } | \
	    grep -av --line-buffered '^20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T' >build/fuzz/$$t.long.log || true; \
	  if [ "$$(cat build/fuzz/$$t.long.rc)" != 0 ]; then tail -60 build/fuzz/$$t.long.log; exit 1; fi; \
	  grep -E "^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec" \
	    build/fuzz/$$t.long.log; \
	done

# The named seeds first, so that -merge=1 keeps them whatever they cover, then
# whatever the tree's corpus or the working corpus adds to them.
fuzz-merge: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  rm -rf fuzz/corpus/$$t.new; mkdir -p fuzz/corpus/$$t.new build/fuzz/corpus/$$t; \
	  for f in $$(ls fuzz/corpus/$$t | grep -Ev '^[0-9a-f]{40}$$'); do \
	    cp fuzz/corpus/$$t/$$f fuzz/corpus/$$t.new/; done; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp \
	    build/fuzz/$$t -merge=1 -max_len=16384 fuzz/corpus/$$t.new fuzz/corpus/$$t \
	    build/fuzz/corpus/$$t 2>build/fuzz/$$t.merge.log || \
	    { grep -v '^20[0-9][0-9]-' build/fuzz/$$t.merge.log | tail -30; exit 1; }; \
	  rm -rf fuzz/corpus/$$t; mv fuzz/corpus/$$t.new fuzz/corpus/$$t; \
	  echo "$$t: $$(ls fuzz/corpus/$$t | wc -l) files, $$(cat fuzz/corpus/$$t/* | wc -c) bytes"; \
	done

test: fuzz-smoke

-include $(FUZZ_OBJS:.o=.d)

# Scale-out mode on one machine: a private PostgreSQL, two replicas and
# haproxy on 127.0.0.1:$(SCALE_DEMO_PORT); Ctrl-C stops everything.
SCALE_DEMO_PORT ?= 8080
.PHONY: scale-demo
scale-demo: build/sessiond
	scripts/install-deps.sh scale
	$(PYTHON) scripts/scale-demo.py --port $(SCALE_DEMO_PORT)

# sessiond - build, test and run. See README.md.
#
#   make          build build/sessiond (installs missing Debian packages first)
#   make run      build and start on 127.0.0.1:8080 with the store in ./var
#   make test     unit + end-to-end tests, under ASan+UBSan and on the release build
#   make asan     build/asan/sessiond, the sanitizer build
#   make format   clang-format every C file; make format-check fails on a diff

VERSION := 0.1.0
CC      ?= cc
PKGS    := jansson sqlite3 libcrypto libssl
PYTHON  := /usr/bin/python3

# Recursively expanded on purpose: pkg-config runs when a recipe needs it,
# after the deps step has installed the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lhttp_parser -lpthread

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
BASE    := -std=c17 -D_GNU_SOURCE -DSD_VERSION=\"$(VERSION)\" -Isrc $(WARN)
CFLAGS_REL  = $(BASE) -O2 -g $(PKG_CFLAGS)
CFLAGS_ASAN = $(BASE) -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined $(PKG_CFLAGS)

SRCS     := $(wildcard src/*.c src/*/*.c)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
REL_OBJS := $(patsubst src/%.c,build/obj/%.o,$(SRCS))
ASAN_OBJS:= $(patsubst src/%.c,build/asan/obj/%.o,$(SRCS))
ASAN_LIB := $(patsubst src/%.c,build/asan/obj/%.o,$(LIB_SRCS))
UNIT_SRCS:= $(wildcard tests/unit/test_*.c)
UNIT_BINS:= $(patsubst tests/unit/%.c,build/asan/tests/%,$(UNIT_SRCS))
DEPS_STAMP := build/.deps-build
TEST_STAMP := build/.deps-test

.PHONY: all deps deps-test run test unit e2e asan bench bench-quick format format-check clean

all: build/sessiond

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

build/obj/%.o: src/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $<"; $(CC) $(CFLAGS_REL) -MMD -MP -c $< -o $@

build/asan/obj/%.o: src/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC (asan) $<"; $(CC) $(CFLAGS_ASAN) -MMD -MP -c $< -o $@

build/sessiond: $(REL_OBJS)
	@echo "LD $@"; $(CC) $(CFLAGS_REL) -o $@ $^ $(PKG_LIBS)

build/asan/sessiond: $(ASAN_OBJS)
	@echo "LD $@"; $(CC) $(CFLAGS_ASAN) -o $@ $^ $(PKG_LIBS)

build/asan/tests/%: tests/unit/%.c $(ASAN_LIB) | $(TEST_STAMP)
	@mkdir -p $(dir $@)
	@echo "LD $@"; $(CC) $(CFLAGS_ASAN) -o $@ $< $(ASAN_LIB) $(PKG_LIBS) -lcmocka

asan: build/asan/sessiond

run: build/sessiond
	@mkdir -p var
	exec build/sessiond --listen 127.0.0.1:8080 --data-dir ./var

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# The end-to-end suite runs twice: against the sanitizer build (catches
# memory errors on every path the tests drive) and the release build.
e2e: build/sessiond build/asan/sessiond | $(TEST_STAMP)
	SESSIOND_BIN=$(CURDIR)/build/asan/sessiond ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e
	SESSIOND_BIN=$(CURDIR)/build/sessiond $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

test: unit e2e

# Benchmarks: never part of make test. Prints the table and writes
# bench/results/latest.md (see docs/performance.md).
bench: build/sessiond
	scripts/install-deps.sh bench
	$(PYTHON) bench/bench.py

bench-quick: build/sessiond
	scripts/install-deps.sh bench
	$(PYTHON) bench/bench.py --quick

format:
	clang-format -i $(wildcard src/*.c src/*.h src/*/*.c src/*/*.h tests/unit/*.c)

format-check:
	@clang-format --dry-run --Werror $(wildcard src/*.c src/*.h src/*/*.c src/*/*.h tests/unit/*.c)

clean:
	rm -rf build

-include $(REL_OBJS:.o=.d) $(ASAN_OBJS:.o=.d)

# Rekey: the two commands are `make run` and `make test`; see README.md.

SWIFT ?= swift
PYTHON ?= /usr/bin/python3
BENCH_SECONDS ?= 3

.PHONY: all deps build test proto proto-check bench bench-directory bench-notifier bench-diagnose bench-forgot bench-console run clean help fuzz fuzz-api bench-import bench-postgres bench-notifier-postgres bench-forgot-postgres bench-directory-postgres check-images

all: build

help:
	@echo "make run         build and start the whole system on this machine (data in ./data, mail in ./mail)"
	@echo "make test        install what is missing, build, run every test"
	@echo "make proto       regenerate the C and Swift code from proto/"
	@echo "make proto-check fail if the committed generated code is stale"
	@echo "make bench       RPC benchmark against a C baseline, in release mode"
	@echo "make bench-directory  1,000,000-user directory: import, search and find-by-email latency, size, memory"
	@echo "make bench-directory-postgres  the same directory copied into PostgreSQL (migrate-to): search latency beside SQLite"
	@echo "make bench-notifier   enqueues/s through the RPC; messages/s delivered to Postfix's smtp-sink"
	@echo "make bench-diagnose   rekey diagnose for a user with 1,000 emails and tokens, 1,000,000 users (after bench-directory)"
	@echo "make bench-forgot     forgot-password submissions/s through all four processes (wrk, 32 connections)"
	@echo "make bench-console    the admin console at 1,000,000 users: filter keystroke, user page with 1,000 messages, pages/s (after bench-directory)"
	@echo "make bench-import     100,000 users through the admin API's staged import, against the offline import"
	@echo "make bench-postgres   rekey-reset-token on PostgreSQL with one and two replicas, beside SQLite"
	@echo "make bench-notifier-postgres   rekey-notifier on PostgreSQL with one and three replicas, beside SQLite"
	@echo "make bench-forgot-postgres     the forgot-password chain with reset-token and notifier on PostgreSQL, one and two replicas, beside SQLite"
	@echo "make check-images  build each Dockerfile's runtime stage with debootstrap + chroot (no Docker engine) and run the forgot flow in it (root)"
	@echo "make fuzz-api    schemathesis against a running gateway from its OpenAPI document (FUZZ_API_EXAMPLES, FUZZ_API_SECONDS)"
	@echo "make fuzz        libFuzzer + AddressSanitizer on each parser, FUZZ_SECONDS (60) each; crashes saved in Fuzz/Regressions"

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build

proto: deps
	PYTHON=$(PYTHON) bash scripts/generate-proto.sh

proto-check: deps
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	PYTHON=$(PYTHON) bash scripts/generate-proto.sh "$$tmp" && \
	for dir in $$(grep -v '^#' scripts/generated-dirs.txt); do \
	  diff -r "$$dir" "$$tmp/$$dir" || { echo "generated code in $$dir is stale: run 'make proto'"; exit 1; }; \
	done && echo "generated code is current"

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

bench: deps
	$(SWIFT) build -c release --product RekeyBenchmark
	$(SWIFT) build -c release --product rekey-reset-token
	cc -O2 -pthread -o Benchmarks/pingpong Benchmarks/pingpong.c
	$(PYTHON) Benchmarks/run.py --rekey .build/release/RekeyBenchmark --c Benchmarks/pingpong \
	  --reset-token .build/release/rekey-reset-token --seconds $(BENCH_SECONDS)

# No Docker engine runs here: the runtime stages are reproduced with debootstrap and chroot.
check-images: deps
	@command -v debootstrap >/dev/null || (sudo_cmd=$$([ "$$(id -u)" -ne 0 ] && echo sudo); DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y -q debootstrap)
	for product in rekey-directory rekey-reset-token rekey-notifier rekey-gateway; do \
	  $(SWIFT) build -c release --static-swift-stdlib --product $$product || exit 1; \
	done
	$(SWIFT) build -c release --product rekey
	$(PYTHON) scripts/check-images.py --bin .build/release --work .build-images

fuzz: deps
	bash scripts/fuzz.sh

fuzz-api: deps
	bash scripts/fuzz-api.sh

bench-postgres: deps
	$(SWIFT) build -c release --product RekeyBenchmark
	$(SWIFT) build -c release --product rekey-reset-token
	$(PYTHON) Benchmarks/tokens_postgres.py --rekey .build/release/RekeyBenchmark \
	  --reset-token .build/release/rekey-reset-token --seconds $(BENCH_SECONDS)

bench-notifier-postgres: deps
	$(SWIFT) build -c release --product RekeyBenchmark
	$(SWIFT) build -c release --product rekey-notifier
	$(PYTHON) Benchmarks/notifier_postgres.py --rekey .build/release/RekeyBenchmark \
	  --notifier .build/release/rekey-notifier --seconds $(BENCH_SECONDS)

bench-forgot-postgres: deps
	@command -v wrk >/dev/null || (sudo_cmd=$$([ "$$(id -u)" -ne 0 ] && echo sudo); DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y -q wrk)
	$(SWIFT) build -c release --product rekey-directory
	$(SWIFT) build -c release --product rekey-reset-token
	$(SWIFT) build -c release --product rekey-notifier
	$(SWIFT) build -c release --product rekey-gateway
	$(PYTHON) Benchmarks/forgot_postgres.py --bin .build/release

bench-import: deps
	$(SWIFT) build -c release --product rekey-directory
	$(SWIFT) build -c release --product rekey-reset-token
	$(SWIFT) build -c release --product rekey-notifier
	$(SWIFT) build -c release --product rekey-gateway
	$(PYTHON) Benchmarks/bulk_import.py

run: deps
	@SWIFT=$(SWIFT) bash scripts/run.sh

clean:
	rm -rf .build Benchmarks/pingpong

bench-directory: deps
	$(SWIFT) build -c release --product RekeyBenchmark
	$(SWIFT) build -c release --product rekey-directory
	$(PYTHON) Benchmarks/directory.py --directory .build/release/rekey-directory --rekey .build/release/RekeyBenchmark

bench-directory-postgres: deps
	$(SWIFT) build -c release --product RekeyBenchmark
	$(SWIFT) build -c release --product rekey-directory
	$(PYTHON) Benchmarks/directory_postgres.py --directory .build/release/rekey-directory --rekey .build/release/RekeyBenchmark

bench-notifier: deps
	@command -v smtp-sink >/dev/null || (echo "Installing postfix for its smtp-sink"; sudo_cmd=$$([ "$$(id -u)" -ne 0 ] && echo sudo); DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y -q postfix)
	$(SWIFT) build -c release --product RekeyBenchmark
	$(SWIFT) build -c release --product rekey-notifier
	$(PYTHON) Benchmarks/notifier.py --notifier .build/release/rekey-notifier --rekey .build/release/RekeyBenchmark

bench-diagnose: deps
	$(SWIFT) build -c release --product rekey-directory
	$(SWIFT) build -c release --product rekey-reset-token
	$(SWIFT) build -c release --product rekey-notifier
	$(SWIFT) build -c release --product rekey-gateway
	$(PYTHON) Benchmarks/diagnose.py

bench-forgot: deps
	@command -v wrk >/dev/null || (sudo_cmd=$$([ "$$(id -u)" -ne 0 ] && echo sudo); DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y -q wrk)
	$(SWIFT) build -c release --product rekey-directory
	$(SWIFT) build -c release --product rekey-reset-token
	$(SWIFT) build -c release --product rekey-notifier
	$(SWIFT) build -c release --product rekey-gateway
	$(PYTHON) Benchmarks/forgot.py

bench-console: deps
	@command -v wrk >/dev/null || (sudo_cmd=$$([ "$$(id -u)" -ne 0 ] && echo sudo); DEBIAN_FRONTEND=noninteractive $$sudo_cmd apt-get install -y -q wrk)
	$(SWIFT) build -c release --product rekey-directory
	$(SWIFT) build -c release --product rekey-reset-token
	$(SWIFT) build -c release --product rekey-notifier
	$(SWIFT) build -c release --product rekey-gateway
	$(PYTHON) Benchmarks/console.py

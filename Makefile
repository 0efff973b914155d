# FlightSim P2P developer commands. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help deps test test-rust serve dev certs vectors lint

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## Install test dependencies (coturn, Chromium, mono, npm and pip packages)
	scripts/deps.sh

test: deps ## Run every test (Rust, browser, C#, deploy files, NAT, then the 10-minute soak); fails on any server panic
	rm -rf test-artifacts
	$(CARGO) test --locked
	@if [ -f tests/browser/package.json ]; then $(MAKE) --no-print-directory test-browser; fi
	tests/csharp/live.sh
	tests/csharp/run.sh
	$(MAKE) --no-print-directory test-dashboard
	$(MAKE) --no-print-directory check-deploy
	$(MAKE) --no-print-directory nat-test
	@# Last and alone: run beside the other suites on a 2-core machine, its
	@# Chromium, mono and user-space lossy bridge starved the load-sensitive
	@# browser tests (a fresh-clone run lost test 3's relay frames).
	$(MAKE) --no-print-directory test-soak
	@scripts/check-panics.sh test-artifacts

test-rust: ## Only the Rust tests
	$(CARGO) test --locked

serve: ## Start the server (release build, dev certificate, loopback)
	$(CARGO) run --release -- serve

dev: ## Start the server with debug logs
	$(CARGO) run -- serve --log flightsim_p2p=debug,info

certs: ## Write a dev certificate to certs/ and print its hash
	$(CARGO) run --release -- certs

vectors: ## Regenerate docs/vectors.txt and docs/client-vectors.json (codec and client behaviour vectors)
	$(CARGO) run -q -- vectors > docs/vectors.txt
	$(CARGO) run -q -- vectors --client > docs/client-vectors.json

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# ---------------------------------------------------------------------------
# Mutation testing (docs/TESTING.md, "Mutation testing")
# ---------------------------------------------------------------------------
# cargo-mutants plants one bug at a time in the code that decides who may do
# what, and checks that some test fails. Pure code is mutated against the
# lib's unit tests only (a few seconds a mutant); the QUIC admission in
# src/quic.rs (accept_loop, PendingSlot) against the integration tests that
# drive it. One job at a time: the machine is shared. Examples:
#   make mutants                                    # everything below, ~1-2 h on 2 cores
#   make mutants MUTANTS_FILES=src/proxy.rs MUTANTS_ADMISSION=  # one file, no admission run
#   make mutants MUTANTS_ARGS="--re 'Core::route|Core::admission'"
#   make mutants-diff                               # only code changed since main (review)
MUTANTS_FILES      ?= crates/core/src/session.rs crates/core/src/session/*.rs crates/core/src/limits.rs \
                      crates/core/src/cluster.rs src/proxy.rs src/relay.rs
# Empty: skip the admission run (it builds the binary and runs integration tests).
MUTANTS_ADMISSION  ?= accept_loop|PendingSlot
# Passed to every cargo command (build and test), so only these targets are built.
MUTANTS_ADMISSION_TESTS ?= --cargo-arg=--test=adversarial --cargo-arg=--test=server
MUTANTS_ARGS       ?=
MUTANTS_BASE       ?= main
# Its own target dir: dependencies stay built between runs, and a run does
# not wait for (or invalidate) the build in target/debug.
MUTANTS_TARGET_DIR ?= $(CURDIR)/target/mutants
# --workspace: the core is its own crate; each mutant runs the tests of its own crate.
MUTANTS_RUN = CARGO_TARGET_DIR=$(MUTANTS_TARGET_DIR) $(CARGO) mutants --workspace --jobs 1
MUTANTS_FILE_ARGS = $(foreach f,$(MUTANTS_FILES),--file '$(f)')

.PHONY: mutants mutants-diff mutants-install
mutants-install:
	@command -v cargo-mutants >/dev/null 2>&1 || $(CARGO) install --locked cargo-mutants

mutants: mutants-install ## Mutation testing of the core (sessions, limits, admission, proxy address, relay, cluster): docs/TESTING.md
	@rc=0; \
	echo "mutants: $(MUTANTS_FILES), against the lib's unit tests (mutants.out/)"; \
	$(MUTANTS_RUN) --cargo-arg=--lib $(MUTANTS_FILE_ARGS) $(MUTANTS_ARGS) || rc=$$?; \
	if [ -n "$(MUTANTS_ADMISSION)" ]; then \
		echo "mutants: QUIC admission in src/quic.rs, against tests/adversarial.rs and tests/server.rs (mutants.out.admission/)"; \
		$(MUTANTS_RUN) --file src/quic.rs --re '$(MUTANTS_ADMISSION)' -o mutants.out.admission \
			$(MUTANTS_ADMISSION_TESTS) $(MUTANTS_ARGS) || rc=$$?; \
	fi; \
	exit $$rc

mutants-diff: mutants-install ## Mutation testing of the core code changed since main (git diff; MUTANTS_BASE=…), for review
	git diff $$(git merge-base $(MUTANTS_BASE) HEAD) > $(MUTANTS_TARGET_DIR).diff
	@if [ ! -s $(MUTANTS_TARGET_DIR).diff ]; then echo "mutants-diff: no change since $(MUTANTS_BASE)"; exit 0; fi; \
	$(MUTANTS_RUN) --cargo-arg=--lib --in-diff $(MUTANTS_TARGET_DIR).diff $(MUTANTS_FILE_ARGS) $(MUTANTS_ARGS)

.PHONY: test-dashboard
test-dashboard: ## Dashboard: a real Prometheus scrapes two servers with real Rust and browser clients (direct, TURN via coturn, relay, failed ICE); every query of deploy/grafana/fsp2p-dashboard.json must return data
	$(CARGO) build --locked --bin flightsim-p2p --example quality_reporter
	tests/dashboard/run.sh

.PHONY: test-browser
test-browser: ## Browser client tests in headless Chromium (needs the server binary)
	$(CARGO) build --locked
	cd tests/browser && node --test

# ---------------------------------------------------------------------------
# Local stack, Docker, deployment (DEPLOYMENT.md)
# ---------------------------------------------------------------------------
# `make start` runs coturn (stun/turnserver-dev.conf: loopback only) and the
# server in the background, sharing a random TURN secret kept in .run/ (git-ignored).
# Logs: logs/coturn.log, logs/server.log. PIDs: .run/*.pid. `make stop` ends both.
RUN_DIR     := .run
LOG_DIR     := logs
# debug (fast to build) or release (what production runs): make start START_PROFILE=release
START_PROFILE ?= debug
START_QUIC  ?= 127.0.0.1:4433
START_HTTP  ?= 127.0.0.1:8080
TURN_PORT   ?= 3478
SERVER_BIN   = target/$(START_PROFILE)/flightsim-p2p
IMAGE       ?= flightsim-p2p
COTURN_IMAGE ?= flightsim-coturn
# Docker Compose v2 plugin if present, else the standalone docker-compose.
COMPOSE     ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: start stop logs docker-build docker-up deploy bench bench-docs check-deploy

start: ## Start coturn (dev config) + server in the background on loopback; logs in logs/
	@set -eu; \
	mkdir -p $(RUN_DIR) $(LOG_DIR); \
	ours() { [ -f "$$1" ] && ps -o args= -p "$$(cat "$$1")" 2>/dev/null | grep -q "$$2"; }; \
	if ours $(RUN_DIR)/server.pid flightsim-p2p || ours $(RUN_DIR)/coturn.pid turnserver; then \
		echo "start: already running (pids in $(RUN_DIR)/); 'make stop' first"; \
		exit 0; \
	fi; \
	echo "start: building the server ($(START_PROFILE))"; \
	$(CARGO) build --locked $(if $(filter release,$(START_PROFILE)),--release) --bin flightsim-p2p; \
	if [ ! -s $(RUN_DIR)/turn-secret ]; then \
		umask 077; \
		secret=$$(openssl rand -hex 32 2>/dev/null || od -An -tx1 -N32 /dev/urandom | tr -d ' \n'); \
		printf '%s\n' "$$secret" > $(RUN_DIR)/turn-secret; \
		echo "start: new TURN secret in $(RUN_DIR)/turn-secret"; \
	fi; \
	ice=""; \
	if command -v turnserver >/dev/null; then \
		rm -rf $(RUN_DIR)/flightsim-coturn.*; \
		TURN_SECRET_FILE=$(RUN_DIR)/turn-secret TURN_CONFIG=stun/turnserver-dev.conf \
		TURN_RUNTIME_DIR="$(CURDIR)/$(RUN_DIR)" \
			nohup sh stun/entrypoint.sh --listening-port $(TURN_PORT) \
			> $(LOG_DIR)/coturn.log 2>&1 < /dev/null & \
		echo $$! > $(RUN_DIR)/coturn.pid; \
		ice="--stun-url stun:127.0.0.1:$(TURN_PORT) --turn-url turn:127.0.0.1:$(TURN_PORT)?transport=udp"; \
	else \
		echo "start: WARNING: coturn is not installed (apt-get install coturn, or 'make deps'):"; \
		echo "start: starting the server alone, without STUN/TURN"; \
	fi; \
	NO_COLOR=1 nohup $(SERVER_BIN) serve --listen $(START_QUIC) --http-listen $(START_HTTP) \
		--cert-dir certs --turn-secret-file $(RUN_DIR)/turn-secret $$ice \
		> $(LOG_DIR)/server.log 2>&1 < /dev/null & \
	echo $$! > $(RUN_DIR)/server.pid; \
	fail() { \
		echo "start: $$1; from $$2:"; \
		if grep -q '^Error:' "$$2"; then sed -n '/^Error:/,/^Stack backtrace:/p' "$$2" | grep -v '^Stack backtrace:'; \
		else tail -n 20 "$$2"; fi; \
		$(MAKE) --no-print-directory stop >/dev/null; exit 1; }; \
	i=0; \
	until curl -fsS -o /dev/null http://$(START_HTTP)/healthz 2>/dev/null; do \
		i=$$((i + 1)); \
		ours $(RUN_DIR)/server.pid flightsim-p2p || fail "the server exited" $(LOG_DIR)/server.log; \
		[ $$i -le 100 ] || fail "no answer from http://$(START_HTTP)/healthz in 10 s" $(LOG_DIR)/server.log; \
		sleep 0.1; \
	done; \
	if [ -n "$$ice" ]; then \
		to=$$(command -v timeout || command -v gtimeout || true); \
		i=0; \
		until [ -n "$$to" ] && $$to 1 turnutils_stunclient -p $(TURN_PORT) 127.0.0.1 >/dev/null 2>&1; do \
			i=$$((i + 1)); \
			ours $(RUN_DIR)/coturn.pid turnserver || fail "coturn exited" $(LOG_DIR)/coturn.log; \
			[ -n "$$to" ] || { sleep 1; break; }; \
			[ $$i -le 10 ] || fail "coturn did not answer STUN on 127.0.0.1:$(TURN_PORT)" $(LOG_DIR)/coturn.log; \
		done; \
		ours $(RUN_DIR)/coturn.pid turnserver || fail "coturn exited" $(LOG_DIR)/coturn.log; \
		echo "start: coturn  stun/turn 127.0.0.1:$(TURN_PORT) udp  (pid $$(cat $(RUN_DIR)/coturn.pid), log $(LOG_DIR)/coturn.log)"; \
	fi; \
	echo "start: server  quic $(START_QUIC) udp, http://$(START_HTTP)  (pid $$(cat $(RUN_DIR)/server.pid), log $(LOG_DIR)/server.log)"; \
	echo "start: demo page http://localhost:$(lastword $(subst :, ,$(START_HTTP)))/ ; 'make logs' to follow, 'make stop' to end"

stop: ## Stop what 'make start' started (server, then coturn)
	@set -eu; \
	for entry in server:flightsim-p2p coturn:turnserver; do \
		name=$${entry%%:*}; cmd=$${entry#*:}; pidfile=$(RUN_DIR)/$$name.pid; \
		[ -f $$pidfile ] || continue; \
		pid=$$(cat $$pidfile); \
		if ps -o args= -p $$pid 2>/dev/null | grep -q $$cmd; then \
			kill -TERM $$pid 2>/dev/null || true; \
			i=0; \
			while kill -0 $$pid 2>/dev/null && [ $$i -lt 100 ]; do sleep 0.1; i=$$((i + 1)); done; \
			if kill -0 $$pid 2>/dev/null; then kill -KILL $$pid 2>/dev/null || true; echo "stop: $$name (pid $$pid) did not stop in 10 s: killed"; \
			else echo "stop: $$name (pid $$pid) stopped"; fi; \
		else \
			echo "stop: $$name was not running"; \
		fi; \
		rm -f $$pidfile; \
	done; \
	rm -rf $(RUN_DIR)/flightsim-coturn.*

logs: ## Follow the logs of 'make start' (logs/server.log, logs/coturn.log)
	@ls $(LOG_DIR)/server.log $(LOG_DIR)/coturn.log >/dev/null 2>&1 || { echo "logs: nothing in $(LOG_DIR)/ yet: 'make start' first"; exit 1; }
	tail -n 50 -F $(wildcard $(LOG_DIR)/server.log $(LOG_DIR)/coturn.log)

docker-build: ## Build the server and coturn images (needs a Docker engine)
	docker build -t $(IMAGE) .
	docker build -t $(COTURN_IMAGE) stun

docker-up: ## docker compose up: server + coturn from docker-compose.yml and .env
	@if [ ! -f .env ]; then \
		umask 077; \
		sed "s/^TURN_SECRET=.*/TURN_SECRET=$$(openssl rand -hex 32)/" .env.example > .env; \
		echo "docker-up: created .env with a new TURN secret; set PUBLIC_HOST, STUN_URLS, TURN_URLS in it, then run 'make docker-up' again"; \
		exit 1; \
	fi
	$(COMPOSE) up -d --build

deploy: ## Deploy the server to Railway (railway up; WebSocket fallback only, see DEPLOYMENT.md)
	@command -v railway >/dev/null 2>&1 || { \
		echo "deploy: the Railway CLI ('railway') is not installed."; \
		echo "deploy: install it (npm install -g @railway/cli, or see https://docs.railway.com/cli),"; \
		echo "deploy: then 'railway login' and 'railway link', and run 'make deploy' again."; \
		exit 1; }
	railway up

bench: ## Run the benchmarks (cargo bench; the harness writes bench-results/report.md)
	$(CARGO) bench --locked

bench-docs: ## Copy bench-results/report.md into docs/BENCHMARKS.md (after a full 'make bench')
	python3 scripts/bench-readme.py

check-deploy: ## Check the deployment files (hadolint, compose, TOML, systemd units) and make start/stop
	bash tests/deploy/check.sh

.PHONY: test-soak test-soak-control
test-soak: ## Soak: Rust, JS and C# clients for 10 min on a path with 5 % loss and 300 ms jitter never lose their server (needs root; SKIPPED otherwise)
	tests/soak/run.sh

test-soak-control: ## The soak test's control: 60 s with a 400 ms live timeout and a blackout; passes only if every client took its server for lost
	tests/soak/run.sh --control

.PHONY: nat-test
nat-test: ## Fallback behind real NATs in network namespaces (needs root; prints SKIPPED otherwise)
	$(CARGO) build --locked
	tests/nat/run.sh

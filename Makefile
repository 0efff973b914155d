# FlightSim P2P developer commands. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help deps test test-rust serve dev certs vectors lint

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## Install test dependencies (coturn, Chromium, mono, npm and pip packages)
	scripts/deps.sh

test: deps ## Run every test (Rust, browser, C# codec)
	$(CARGO) test --locked
	@if [ -f tests/browser/package.json ]; then $(MAKE) --no-print-directory test-browser; fi
	tests/csharp/live.sh
	tests/csharp/run.sh

test-rust: ## Only the Rust tests
	$(CARGO) test --locked

serve: ## Start the server (release build, dev certificate, loopback)
	$(CARGO) run --release -- serve

dev: ## Start the server with debug logs
	$(CARGO) run -- serve --log flightsim_p2p=debug,info

certs: ## Write a dev certificate to certs/ and print its hash
	$(CARGO) run --release -- certs

vectors: ## Regenerate docs/vectors.txt (golden vectors for client codecs)
	$(CARGO) run -q -- vectors > docs/vectors.txt

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

.PHONY: test-browser
test-browser: ## Browser client tests in headless Chromium (needs the server binary)
	$(CARGO) build --locked
	cd tests/browser && node --test

# closeloop: the two commands a new user needs are `make run` and `make test`.

CARGO ?= cargo
DATA_DIR ?= ./.closeloop
export CLOSELOOP_DATA_DIR := $(DATA_DIR)
# The example programs (docs/programs.md) unless you point at your own.
export CLOSELOOP_PROGRAMS ?= deploy/examples/programs.yaml

.PHONY: all build run demo test test-unit bench lint fmt clippy k8s clean help

all: build

help:
	@echo "make run    start NATS (if none answers) and closeloop serve --roles all on SQLite"
	@echo "make demo   run the example feedback through routing and print the tickets it opens"
	@echo "make test   unit, property and integration tests (real nats-server, SQLite and PostgreSQL)"
	@echo "make bench  raw NATS publish rate vs the feedback → ticket path, the command path, SLA timers and analytics (release build)"
	@echo "make lint   rustfmt and clippy, as CI runs them"
	@echo "make k8s    render the Kubernetes manifests (kubectl kustomize)"

# The workspace build (same feature set as `make test`, so nothing rebuilds twice).
build:
	$(CARGO) build --workspace --bins

## run: a local nats-server (started and stopped here if none was running) and every role.
run: build
	@started=$$(deploy/local/ensure-nats.sh); \
	trap 'if [ "$$started" = started ]; then kill $$(cat $(DATA_DIR)/nats.pid) 2>/dev/null; echo "stopped nats-server" >&2; fi' EXIT INT TERM; \
	./target/debug/closeloop serve --roles all

## demo: example directory and feedback in, owned tickets out (deploy/local/demo.sh).
demo: build
	@deploy/local/demo.sh

## test: needs nats-server on PATH and the test tools (install-test-tools.sh: the Prometheus text parser, an SMTP server, the Standard Webhooks verifier; all installed if missing)
## and PostgreSQL on 127.0.0.1:5432 (started or installed by ensure-postgres.sh).
test:
	@deploy/local/install-nats.sh
	@deploy/local/install-test-tools.sh
	@export CLOSELOOP_TEST_POSTGRES_URL="$$(deploy/local/ensure-postgres.sh)"; \
	$(CARGO) test --workspace

## bench: raw broker publish rate vs the whole intake → routing → ticket path, owner notified by e-mail, the command path, SLA timers, and analytics rebuild, reports and memory (release build).
bench:
	@deploy/local/install-nats.sh
	@export CLOSELOOP_TEST_POSTGRES_URL="$$(deploy/local/ensure-postgres.sh)"; \
	$(CARGO) bench -p closeloop-tests --bench pipeline
	@export CLOSELOOP_TEST_POSTGRES_URL="$$(deploy/local/ensure-postgres.sh)"; \
	$(CARGO) bench -p closeloop-tests --bench commands
	@export CLOSELOOP_TEST_POSTGRES_URL="$$(deploy/local/ensure-postgres.sh)"; \
	$(CARGO) bench -p closeloop-tests --bench timers
	@export CLOSELOOP_TEST_POSTGRES_URL="$$(deploy/local/ensure-postgres.sh)"; \
	$(CARGO) bench -p closeloop-tests --bench analytics

lint: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

k8s:
	kubectl kustomize k8s/overlays/production > /dev/null
	kubectl kustomize k8s/overlays/single-node > /dev/null
	@echo "manifests render: kubectl kustomize k8s/overlays/{production,single-node}"

clean:
	$(CARGO) clean
	rm -rf $(DATA_DIR)

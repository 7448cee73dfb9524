# Ferrocart: two commands on a fresh machine.
#   make dev    installs what is missing, starts moto, provisions template.yaml, serves :3000
#   make test   every check CI runs
# Everything Python lives in virtualenvs under $(VENV), pinned by infra/requirements-*.txt.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath .)
export CARGO_TARGET_DIR ?= $(ROOT)/target
VENV ?= $(ROOT)/.venv
BIN := $(CARGO_TARGET_DIR)/debug
PORT ?= 3000

EMULATORS := $(VENV)/emulators
TOOLS := $(VENV)/tools
CHECKOV := $(VENV)/checkov
SCHEMATHESIS := $(VENV)/schemathesis
# One venv per pinned requirements file infra/requirements-NAME.txt, in $(VENV)/NAME: checkov and
# Schemathesis have their own, so their many dependencies cannot move the SAM CLI's pins.
# Stamps carry a hash of the pinned requirements, so a changed pin reinstalls and an unchanged
# one (a cached venv in CI) does not. The requirement files are deliberately not prerequisites:
# a fresh clone gives them a new mtime, and the hash already says whether they changed.
stamp = $(VENV)/$(1)/.installed-$(shell sha256sum infra/requirements-$(1).txt | cut -c1-16)
EMULATORS_STAMP := $(call stamp,emulators)
TOOLS_STAMP := $(call stamp,tools)
CHECKOV_STAMP := $(call stamp,checkov)
SCHEMATHESIS_STAMP := $(call stamp,schemathesis)

# The recipe of a venv stamp: $(call install-venv,NAME,what it holds).
define install-venv
	@echo "Installing $(2) into $(VENV)/$(1) (first run only)..."
	@python3 -m venv $(VENV)/$(1)
	@$(VENV)/$(1)/bin/pip install -q --disable-pip-version-check -r infra/requirements-$(1).txt
	@rm -f $(VENV)/$(1)/.installed-* && touch $@
endef

export FERROCART_PYTHON := $(EMULATORS)/bin/python
# cfn-lint and SAM read these; nothing here talks to AWS.
LINT_ENV := AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=lint \
	AWS_SECRET_ACCESS_KEY=lint SAM_CLI_TELEMETRY=0 PATH="$(TOOLS)/bin:$$PATH"

.PHONY: help dev test token seed tail trace venv build fmt-check clippy unit-and-e2e lint sam-build schemas clean \
	browser-test chromium screenshots bench api-fuzz sweep

help:
	@echo "make dev                    run the shop locally on http://127.0.0.1:$(PORT) (storefront: /shop/)"
	@echo "make -s token SUB=alice     print a customer's bearer token (ADMIN=1 for an admin)"
	@echo "make seed                   load the demo catalog into a running 'make dev'"
	@echo "make tail [ORDER=ord_...]   stream the events on the running 'make dev' bus"
	@echo "make trace ORDER=ord_...    an order's timeline: every invocation that touched it"
	@echo "make test                   format, clippy, unit + end-to-end tests, API fuzzing, template lint"
	@echo "make api-fuzz               Schemathesis against docs/openapi.yaml on a local cloud of its own"
	@echo "make sam-build              build every function for Lambda with SAM + cargo-lambda"
	@echo "make bench                  cold start, size, cost per order, flash sale -> BENCHMARKS.md"
	@echo "make sweep                  delete the build output no build here uses any more"
	@echo "make deploy-storefront STACK=...  upload the storefront and its config.json to a deployed stack"

$(EMULATORS_STAMP):
	$(call install-venv,emulators,the emulators)

$(TOOLS_STAMP):
	$(call install-venv,tools,cfn-lint + SAM CLI + cargo-lambda)

$(CHECKOV_STAMP):
	$(call install-venv,checkov,checkov)

$(SCHEMATHESIS_STAMP):
	$(call install-venv,schemathesis,Schemathesis)

venv: $(EMULATORS_STAMP) $(TOOLS_STAMP) $(CHECKOV_STAMP) $(SCHEMATHESIS_STAMP)

build:
	cargo build --workspace --bins

dev: $(EMULATORS_STAMP) build
	@$(BIN)/localcloud --root $(ROOT) dev --port $(PORT)

token:
	@$(if $(SUB),,$(error SUB is required: make -s token SUB=alice [ADMIN=1]))
	@cargo build -q -p localcloud --bin localcloud
	@$(BIN)/localcloud --root $(ROOT) token '$(SUB)' $(if $(filter 1 true yes,$(ADMIN)),--admin)

seed:
	@cargo build -q -p localcloud --bin localcloud
	@$(BIN)/localcloud --root $(ROOT) seed --api http://127.0.0.1:$(PORT)

tail:
	@cargo build -q -p localcloud --bin localcloud
	@$(BIN)/localcloud --root $(ROOT) tail $(if $(ORDER),--order '$(ORDER)')

trace:
	@$(if $(ORDER),,$(error ORDER is required: make trace ORDER=ord_...))
	@cargo build -q -p localcloud --bin localcloud
	@$(BIN)/localcloud --root $(ROOT) trace '$(ORDER)'

test: fmt-check clippy unit-and-e2e api-fuzz browser-test lint

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p bench --features warm --all-targets -- -D warnings

# The end-to-end tests run the function binaries, so build them first.
unit-and-e2e: $(EMULATORS_STAMP) build
	cargo test --workspace

# Schemathesis against docs/openapi.yaml, served at /openapi.json by a local cloud of its own (free
# port): real objects arranged first, then generated requests as a customer and an admin; no 5xx,
# every status documented, every body valid against its schema. API_FUZZ_EXAMPLES (cases per
# operation and phase, default 40) sets the volume; API_FUZZ_SEED=<n> replays a run.
api-fuzz: $(EMULATORS_STAMP) $(SCHEMATHESIS_STAMP) build
	LOCALCLOUD=$(BIN)/localcloud $(SCHEMATHESIS)/bin/python tests/schemathesis/run.py

# checkov: zero failures; every check a resource skips says why, inline in template.yaml.
lint: $(TOOLS_STAMP) $(CHECKOV_STAMP)
	@# What `sam build` links (the default members' features): one crypto library, ring.
	@if cargo tree -e normal,build -i aws-lc-sys 2>/dev/null | grep -q aws-lc-sys; then \
	  echo "a function links aws-lc (cargo tree -e normal,build -i aws-lc-sys): see default-members in Cargo.toml"; exit 1; fi
	@# ... and HTTP/1.1 only: no h2 (adapters::http; the SDK's aws-smithy-http-client would bring it).
	@if cargo tree -e normal,build -i h2 2>/dev/null | grep -q '^h2 '; then \
	  echo "a function links h2 (cargo tree -e normal,build -i h2): see adapters::http"; exit 1; fi
	$(LINT_ENV) cfn-lint template.yaml
	$(LINT_ENV) sam validate --lint --template template.yaml
	$(CHECKOV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

sam-build: $(TOOLS_STAMP)
	$(LINT_ENV) sam build --template template.yaml

# The storefront's browser tests (storefront/tests): Playwright (playwright-core, pinned in
# storefront/package-lock.json, installed with npm ci) drives Debian's Chromium, installed with
# apt-get when missing (as root, non-interactively: CI runs as root), against a local cloud the
# tests start on a free port. Screenshots of failed journeys go to storefront/test-results/.
CHROMIUM ?= /usr/bin/chromium
NPM_STAMP := storefront/node_modules/.installed-$(shell sha256sum storefront/package-lock.json | cut -c1-16)

$(NPM_STAMP):
	@command -v npm >/dev/null || { echo "The browser tests need Node.js 20+ and npm (Debian: apt-get install nodejs npm)."; exit 1; }
	@echo "Installing the storefront's test tools with npm ci (first run only)..."
	@cd storefront && npm ci --no-audit --no-fund --loglevel=error
	@rm -f storefront/node_modules/.installed-* && touch $@

chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests (first run only)..."; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "The browser tests need Chromium at $(CHROMIUM): as root, apt-get install chromium (Debian),"; \
	    echo "or set CHROMIUM=/path/to/chromium."; exit 1; \
	  fi; \
	fi
	@$(CHROMIUM) --version

browser-test: $(EMULATORS_STAMP) $(NPM_STAMP) chromium build
	cd storefront && LOCALCLOUD=$(BIN)/localcloud CHROMIUM=$(CHROMIUM) node --test --test-concurrency=1 tests/

# The README's screenshots (docs/images/storefront.png, admin-console.png), on the demo catalog.
screenshots: $(EMULATORS_STAMP) $(NPM_STAMP) chromium build
	cd storefront && LOCALCLOUD=$(BIN)/localcloud CHROMIUM=$(CHROMIUM) node tests/screenshots.mjs

# Uploads storefront/public to a stack deployed with StorefrontHosting=cloudfront, with the
# config.json its outputs make (API, Cognito managed login, Stripe publishable key), and
# invalidates index.html and config.json at CloudFront. Needs the AWS CLI and credentials;
# DRY_RUN=1 prints the config.json and the uploads only. README: "Hosting the storefront".
.PHONY: deploy-storefront
deploy-storefront:
	@test -n "$(STACK)" || { echo "usage: make deploy-storefront STACK=<stack> [REGION=<region>] [DRY_RUN=1]"; exit 2; }
	node storefront/deploy/deploy.mjs --stack $(STACK) $(if $(REGION),--region $(REGION)) $(if $(DRY_RUN),--dry-run)

# The benchmarks (not part of `make test`; clippy and the unit tests there compile the harness).
# Builds the functions' release binaries and the hello-world baseline with the same profile,
# then measures; BENCH_ARGS go to the harness, e.g. BENCH_ARGS="--customers 300" or
# `make bench BENCH=cold` for one benchmark (cold, cost, flash, warm, latency; default all).
# The warm benchmark runs the handlers in-process, so it is built in release like the functions
# (feature `warm`: the in-memory stores, never unified into the Lambda binaries' build).
FUNCTION_PACKAGES := $(patsubst functions/%/Cargo.toml,-p %,$(wildcard functions/*/Cargo.toml))
BENCH ?= all
bench: $(EMULATORS_STAMP)
	cargo build --release $(FUNCTION_PACKAGES) --bins
	cargo build --release -p hello-lambda
	cargo build -p bench --bin ferrocart-bench
	cargo build --release -p bench --features warm --bin ferrocart-warm
	$(BIN)/ferrocart-bench --root $(ROOT) --bin-dir $(CARGO_TARGET_DIR)/release $(BENCH) $(BENCH_ARGS)

# Regenerate events/schemas/*.json from the event types in shared/domain-events.
schemas:
	UPDATE_SCHEMAS=1 cargo test -q -p domain-events committed_json_schemas

# Deletes from $(CARGO_TARGET_DIR) every unit that no build above uses (old dependency versions,
# feature sets and flags); the builds run first, so this is quick when they are up to date.
sweep:
	python3 infra/sweep-target.py all

clean:
	cargo clean
	rm -rf .aws-sam .ferrocart

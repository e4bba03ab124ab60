# The two commands a newcomer needs: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
TOOLS := $(VENV)/.installed-$(shell cksum < requirements-dev.txt | cut -d' ' -f1)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# `make run` talks to `cargo lambda watch` on loopback unless you point it elsewhere.
# With AWS_ENDPOINT_URL_LAMBDA unset and real credentials, it invokes real Lambda functions.
LAMBDA_PORT ?= 9000
export AWS_ENDPOINT_URL_LAMBDA ?= http://127.0.0.1:$(LAMBDA_PORT)
export AWS_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= local-dev
export AWS_SECRET_ACCESS_KEY ?= local-dev
export GATEWAY_DATA_DIR ?= .data
export GATEWAY_FUNCTION_ALLOWLIST ?= *

.PHONY: run test tools lint clean

tools: $(TOOLS)

$(TOOLS): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

## run: the local gateway on http://127.0.0.1:3000, with cargo lambda watch serving the example function
run: tools
	cargo build -p gateway-local -p example-subscriber
	@set -euo pipefail; \
	setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port $(LAMBDA_PORT) --ignore-changes & watch=$$!; \
	trap 'kill -TERM -- -$$watch 2>/dev/null || true' EXIT; \
	./target/debug/event-gateway

## test: every test: unit, API, store contract, end to end
test: tools
	cargo test --workspace

lint: tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(VENV) .data target

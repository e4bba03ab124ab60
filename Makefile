# The two commands a newcomer needs: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
TOOLS := $(VENV)/.installed-$(shell cksum < requirements-dev.txt | cut -d' ' -f1)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# checkov pins boto3 to a version that aws-sam-cli's pin excludes, so it has a venv of its
# own, kept off PATH (requirements-checkov.txt).
CHECKOV_VENV := .venv-checkov
CHECKOV_TOOLS := $(CHECKOV_VENV)/.installed-$(shell cksum < requirements-checkov.txt | cut -d' ' -f1)

export SAM_CLI_TELEMETRY := 0

# `make run` talks to `cargo lambda watch` on loopback unless you point it elsewhere. These
# defaults apply to `run` only (never to `deploy`), and only where you have not set them.
# With AWS_ENDPOINT_URL_LAMBDA set to nothing and real credentials, it invokes real Lambda.
LAMBDA_PORT ?= 9000
run: export AWS_ENDPOINT_URL_LAMBDA ?= http://127.0.0.1:$(LAMBDA_PORT)
run: export AWS_REGION ?= us-east-1
run: export AWS_ACCESS_KEY_ID ?= local-dev
run: export AWS_SECRET_ACCESS_KEY ?= local-dev
run: export GATEWAY_DATA_DIR ?= .data
run: export GATEWAY_FUNCTION_ALLOWLIST ?= *

.PHONY: run test tools checkov-tools template-lint lint build deploy clean

tools: $(TOOLS)
checkov-tools: $(CHECKOV_TOOLS)

$(TOOLS): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(CHECKOV_TOOLS): requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	rm -f $(CHECKOV_VENV)/.installed-*
	touch $@

# checkov's verdict on template.yaml: no failed check, and a reason for every suppression (a
# resource's Metadata.checkov.skip), which checkov itself does not insist on.
define CHECKOV_VERDICT
import json, sys
report = json.load(sys.stdin)
results, summary = report["results"], report["summary"]
unexplained = [c for c in results["skipped_checks"]
               if c["check_result"].get("suppress_comment", "").strip() in ("", "No comment provided")]
for c in results["failed_checks"]:
    print(f"template.yaml:{c['file_line_range'][0]}: {c['check_id']} failed on {c['resource']}:",
          c["check_name"])
for c in unexplained:
    print(f"template.yaml:{c['file_line_range'][0]}: {c['check_id']} skipped on {c['resource']}",
          "without a comment saying why")
print(f"checkov {summary['checkov_version']}: {summary['failed']} failed,",
      f"{summary['skipped']} suppressed ({len(unexplained)} without a reason),",
      f"{summary['parsing_errors']} parsing errors; {summary['passed']} checks pass")
bad = summary["failed"] or unexplained or summary["parsing_errors"] or not summary["resource_count"]
sys.exit(1 if bad else 0)
endef
export CHECKOV_VERDICT

## run: the local gateway on http://127.0.0.1:3000, with cargo lambda watch serving the example function
run: tools
	@# --bin, not -p: features are then unified across the workspace, as for the `cargo run --bin`
	@# that cargo lambda watch starts, so the first invocation does not wait for a rebuild.
	cargo build --bin event-gateway --bin example-subscriber
	@set -euo pipefail; \
	setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port $(LAMBDA_PORT) --ignore-changes & watch=$$!; \
	trap 'kill -TERM -- -$$watch 2>/dev/null || true' EXIT; \
	./target/debug/event-gateway

## test: the template's lint, then every test: unit, API, store contracts, moto, end to end
test: tools template-lint
	cargo test --workspace

template-lint: tools checkov-tools
	cfn-lint template.yaml
	sam validate --lint
	@# --skip-download: no call to checkov's vendor API (guideline links); the checks are local.
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download -o json \
	  | $(CHECKOV_VENV)/bin/python -c "$$CHECKOV_VERDICT"

lint: tools template-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## build: the four Lambda handlers for arm64 (cargo-lambda brings Zig for the cross build)
build: tools
	cargo lambda build --release --arm64 -p gateway-lambda-handlers

## deploy: sam build + deploy; guided the first time (it writes samconfig.toml)
deploy: tools
	sam build --beta-features
	if [ -f samconfig.toml ]; then sam deploy; else sam deploy --guided; fi

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .data target

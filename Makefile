# The two commands a newcomer needs: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
# `make run` needs cargo-lambda alone (requirements-run.txt), so a first run does not wait for
# SAM, moto and cfn-lint; `make test` installs everything (requirements-dev.txt, which includes it).
RUN_TOOLS := $(VENV)/.installed-run-$(shell cksum < requirements-run.txt | cut -d' ' -f1)
TOOLS := $(VENV)/.installed-dev-$(shell cat requirements-run.txt requirements-dev.txt | cksum | cut -d' ' -f1)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# checkov pins boto3 to a version that aws-sam-cli's pin excludes, so it has a venv of its
# own, kept off PATH (requirements-checkov.txt).
CHECKOV_VENV := .venv-checkov
CHECKOV_TOOLS := $(CHECKOV_VENV)/.installed-$(shell cksum < requirements-checkov.txt | cut -d' ' -f1)

export SAM_CLI_TELEMETRY := 0
# template.yaml uses AWS::LanguageExtensions (Fn::ForEach); sam build, local invoke, package and
# deploy read it only with their local expansion on (--language-extensions), off by default.
export SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS := 1

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

.PHONY: run test tools run-tools checkov-tools template-lint lint build deploy clean

tools: $(TOOLS)
run-tools: $(RUN_TOOLS)
checkov-tools: $(CHECKOV_TOOLS)

$(RUN_TOOLS): requirements-run.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-run.txt
	rm -f $(VENV)/.installed-run-*
	touch $@

$(TOOLS): requirements-run.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-dev-*
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
name = sys.argv[1]
for c in results["failed_checks"]:
    print(f"{name}:{c['file_line_range'][0]}: {c['check_id']} failed on {c['resource']}:",
          c["check_name"])
for c in unexplained:
    print(f"{name}:{c['file_line_range'][0]}: {c['check_id']} skipped on {c['resource']}",
          "without a comment saying why")
print(f"checkov {summary['checkov_version']} on {name}: {summary['failed']} failed,",
      f"{summary['skipped']} suppressed ({len(unexplained)} without a reason),",
      f"{summary['parsing_errors']} parsing errors; {summary['passed']} checks pass")
bad = summary["failed"] or unexplained or summary["parsing_errors"] or not summary["resource_count"]
sys.exit(1 if bad else 0)
endef
export CHECKOV_VERDICT

# checkov skips Fn::ForEach, so it never sees what the Ingest* lists make. This writes the
# template as CloudFormation would run it with every list wired (two items each, and a topic
# key, as checkov reads TopicKmsKeyArn's !If in the template itself): SAM CLI's own
# AWS::LanguageExtensions expansion, then the SAM translator. It fails unless each loop made
# one resource per item.
define WIRED_TEMPLATE
import collections, json, os, sys
from samcli.yamlhelper import yaml_parse
from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions
from samtranslator.translator.transform import transform
acct = "arn:aws:{}:us-east-1:123456789012:{}"
params = {
    "IngestSqsQueueArns": acct.format("sqs", "orders") + "," + acct.format("sqs", "payments.fifo"),
    "IngestSnsTopicArns": acct.format("sns", "alerts") + ",arn:aws:sns:eu-west-1:210987654321:feed",
    "IngestDynamoDbStreamArns": ",".join(acct.format("dynamodb", f"table/{t}/stream/2026-01-01T00:00:00.000")
                                         for t in ("Orders", "Users")),
    "IngestKinesisStreamArns": acct.format("kinesis", "stream/clicks") + "," + acct.format("kinesis", "stream/views"),
    "IngestEventPattern": '{"source":["aws.codecommit"]}',
    "IngestS3BucketNames": "gateway-uploads,gateway-archive",
    "IngestKmsKeyArns": acct.format("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"),
    "TopicKmsKeyArn": acct.format("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"),
    "AlarmTopicArn": acct.format("sns", "on-call"),
}
pseudo = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
template = yaml_parse(open("template.yaml").read())
expanded = expand_language_extensions(template, parameter_values={**params, **pseudo}, enabled=True)
template = expanded.expanded_template
made = collections.Counter(v["Type"] for k, v in template["Resources"].items()
                           if k.startswith(("IngestSqs", "IngestSns", "IngestDynamoDb", "IngestKinesis")))
want = {"AWS::Lambda::EventSourceMapping": 6, "AWS::SNS::Subscription": 2, "AWS::Lambda::Permission": 2}
if made != want:
    sys.exit(f"Fn::ForEach made {dict(made)}, not {want}")
template["Transform"] = "AWS::Serverless-2016-10-31"
template["Globals"]["Function"]["CodeUri"] = "s3://bucket/key"  # as sam validate does
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
class NoManagedPolicies:
    def load(self):
        return {}
json.dump(transform(template, params, NoManagedPolicies()), sys.stdout, indent=1)
endef
export WIRED_TEMPLATE

## run: the local gateway on http://127.0.0.1:3000, with cargo lambda watch serving the example function
run: run-tools
	@# --bin, not -p: features are then unified across the workspace, as for the `cargo run --bin`
	@# that cargo lambda watch starts, so the first invocation does not wait for a rebuild.
	cargo build --bin event-gateway --bin example-subscriber
	@set -euo pipefail; \
	setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port $(LAMBDA_PORT) --ignore-changes & watch=$$!; \
	trap 'kill -TERM -- -$$watch 2>/dev/null || true' EXIT; \
	$(or $(CARGO_TARGET_DIR),target)/debug/event-gateway

## test: the template's lint, then every test: unit, API, store contracts, moto, end to end
test: tools template-lint
	cargo test --workspace

template-lint: tools checkov-tools
	cfn-lint template.yaml
	sam validate --lint
	@# --skip-download: no call to checkov's vendor API (guideline links); the checks are local.
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download -o json \
	  | $(CHECKOV_VENV)/bin/python -c "$$CHECKOV_VERDICT" template.yaml
	@set -euo pipefail; wired=$$(mktemp --suffix=.json); trap 'rm -f "$$wired"' EXIT; \
	$(VENV)/bin/python -c "$$WIRED_TEMPLATE" > "$$wired"; \
	$(CHECKOV_VENV)/bin/checkov -f "$$wired" --framework cloudformation --skip-download -o json \
	  | $(CHECKOV_VENV)/bin/python -c "$$CHECKOV_VERDICT" "template.yaml wired"

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

# Lethe's two everyday commands are `make run` and `make test`; the rest are
# their parts. Every target installs or starts what it needs first.

GO        ?= go
BIN       ?= bin/lethe
RACE_PKGS := ./api/... ./auth/... ./relay/... ./connectors/... ./internal/kafkax/... ./internal/metrics/... ./internal/apiclient/... ./escalation/... ./activities/... ./workflows/...
# FUZZTIME is how long `make fuzz` searches each fuzz target for new inputs;
# `make test` runs each for FUZZSHORT. Each word of FUZZ_TARGETS is
# package:target, since go test fuzzes one target per invocation.
FUZZTIME  ?= 30s
FUZZSHORT ?= 3s
FUZZ_TARGETS := wire:FuzzDecodeCommand wire:FuzzDecodeConfirmation \
	wire:FuzzDecodeBatchCommand wire:FuzzDecodeBatchConfirmation \
	api:FuzzCreateErasure api:FuzzCreateBatch api:FuzzPutSystem api:FuzzListErasures \
	connectors:FuzzHandleMessage certificate:FuzzVerifyBatch

# REDOCLY pins the OpenAPI linter `make openapi-lint` runs through npx.
REDOCLY   ?= @redocly/cli@2.77.0

.PHONY: run test test-setup build postgres fmt-check vet unit race e2e-secure fuzz fuzz-short helm openapi-lint bench scale clean

## run: build Lethe and start `lethe dev --demo` (PostgreSQL started or installed if missing)
run: postgres build
	$(BIN) dev --demo

## test: the whole test suite, as CI runs it
test: postgres test-setup fmt-check vet openapi-lint unit e2e-secure race fuzz-short helm

## test-setup: the tools the tests drive (kcat and openssl, Python with confluent-kafka and Node with kafkajs play services without the SDK; chromium opens the Web UI)
test-setup:
	@missing=""; for t in kcat openssl chromium; do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	/usr/bin/python3 -c 'import confluent_kafka' >/dev/null 2>&1 || missing="$$missing python3-confluent-kafka"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing from Debian's packages..." >&2; \
		apt-get update -qq && apt-get install -y -qq$$missing >/dev/null; \
	fi
	@[ -d examples/node-connector/node_modules/kafkajs ] || \
		(cd examples/node-connector && npm ci --no-audit --no-fund --loglevel=error)

build:
	$(GO) build -o $(BIN) ./cmd/lethe

postgres:
	@bash scripts/ensure-postgres.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 30m ./...

## e2e-secure: the end-to-end suite again on a SASL/SCRAM + ACL broker with every message signed
e2e-secure: postgres test-setup
	LETHE_E2E_SECURE=1 LETHE_E2E_SIGNED=1 $(GO) test -count=1 -timeout 30m ./internal/e2e/

race:
	$(GO) test -count=1 -race -timeout 30m $(RACE_PKGS)

## fuzz: search every fuzz target for new failing inputs, FUZZTIME each (see docs/fuzzing.md)
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in ./$${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) -parallel 2 ./$${t%%:*}; \
	done

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZSHORT)

helm:
	@bash scripts/helm-check.sh

## openapi-lint: Redocly's recommended rules over api/openapi.json (security-defined among them)
openapi-lint:
	@command -v npx >/dev/null || { echo "openapi-lint needs npx: apt-get install -y nodejs npm"; exit 1; }
	npx --yes $(REDOCLY) lint api/openapi.json

## bench: end-to-end erasures next to raw Temporal and Kafka baselines, K = 1, 5, 20 (see docs/benchmarks.md)
bench: postgres
	$(GO) run ./cmd/lethe bench --k 1,5,20

## scale: the scale checks at full size: one erasure to 1,000 systems and a burst of 10,000 requests to one system
scale: postgres
	LETHE_SCALE=full $(GO) test -count=1 -v -run '^TestScale' -timeout 60m ./internal/e2e/

clean:
	rm -rf bin .lethe

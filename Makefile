# Lethe's two everyday commands are `make run` and `make test`; the rest are
# their parts. Every target installs or starts what it needs first.

GO        ?= go
BIN       ?= bin/lethe
RACE_PKGS := ./api/... ./relay/... ./connectors/... ./internal/kafkax/...
FUZZTIME  ?= 3s

.PHONY: run test build postgres fmt-check vet unit race helm bench clean

## run: build Lethe and start `lethe dev --demo` (PostgreSQL started or installed if missing)
run: postgres build
	$(BIN) dev --demo

## test: the whole test suite, as CI runs it
test: postgres fmt-check vet unit race helm

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

race:
	$(GO) test -count=1 -race -timeout 30m $(RACE_PKGS)

helm:
	@bash scripts/helm-check.sh

## bench: end-to-end erasure throughput and latency on the embedded stack
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./internal/e2e/

clean:
	rm -rf bin .lethe

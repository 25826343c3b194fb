# Bridgehead build and test entry points. `make test` is what CI runs.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 20s
BENCHTIME ?= 2s
BENCHSTAT ?= $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
# staticcheck, pinned; its configuration is staticcheck.conf.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

export CGO_ENABLED ?= 1

.PHONY: all build test test-k8s vet lint fmt-check fuzz bench bench-http soak tools clean

all: build

build:
	$(GO) build -trimpath -o bin/bridgehead ./cmd/bridgehead

## test: vet, staticcheck, gofmt check and the whole suite under the race detector.
test: tools vet lint fmt-check
	$(GO) test -race -count=1 -timeout 14m $(PKGS)

## test-k8s: the deployment kit applied to a real kube-apiserver (with etcd) as the Azure Flux
## extension applies it (deploy/apiserver_test.go, build tag k8s). scripts/k8s-binaries.sh builds
## kube-apiserver from the Go module proxy and unpacks Debian's etcd into
## ~/.cache/bridgehead-test/k8s-<version>/ when missing: ~10 minutes the first time on a 2-core
## machine, nothing afterwards.
test-k8s: tools
	dir="$$(GO=$(GO) ./scripts/k8s-binaries.sh)" && \
	BRIDGEHEAD_K8S_BIN_DIR="$$dir" $(GO) test -tags k8s -count=1 -timeout 10m -run '^TestAPIServer$$' -v ./deploy/

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags k8s ./deploy/...

lint:
	$(STATICCHECK) $(PKGS)

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## tools: install what the tests need on a fresh machine (idempotent).
tools:
	@./scripts/install-tools.sh

## fuzz: a short run of every fuzz target.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## soak: the chaos test at length: two API and two Kafka forwarder processes on one spool, one of
## them SIGKILLed and restarted every 1–2 s for SOAK_SECONDS while clients send; then every
## acknowledged message must be in the topic and nothing in dead/ or quarantine/.
SOAK_SECONDS ?= 600
soak:
	BRIDGEHEAD_CHAOS_SECONDS=$(SOAK_SECONDS) $(GO) test -run '^TestChaos$$' -count 1 -v \
	  -timeout $$(( $(SOAK_SECONDS) / 60 + 10 ))m ./test/e2e/

## bench: the benchmarks behind docs/performance.md (spool, API vs baseline, security costs,
## forwarder drain; medians by benchstat). ROUNDS rounds of -count 1, so that the variants of a
## comparison alternate in time instead of running back to back (-count N would repeat each
## variant N times in a row, and these machines drift over minutes).
ROUNDS ?= 5
## The spools of every round stay in one directory until the end (internal/benchdir says why).
bench:
	rm -f bench.out
	dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && export BRIDGEHEAD_BENCH_DIR="$$dir" && \
	for i in $$(seq $(ROUNDS)); do \
	  $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -count 1 -timeout 60m ./internal/spool/ ./internal/ingest/ | tee -a bench.out || exit 1; \
	done
	$(GO) test -run '^$$' -bench BenchmarkDrain -benchtime 200000x -count 3 -timeout 30m ./internal/forward/ | tee -a bench.out
	$(GO) test -run '^$$' -bench BenchmarkIdleDelivery -benchtime 40x -count 1 ./internal/forward/ | tee -a bench.out
	$(BENCHSTAT) -col /impl -filter '.unit:(msgs/s OR fsyncs/msg OR fsops/msg OR cpu-µs/req)' bench.out
	$(BENCHSTAT) -col /sec -filter '.name:(Security OR Guard)' bench.out
	@# 45 s for ext4 to forget the deletions above (docs/performance.md), then the HTTP comparison.
	$(MAKE) bench-http SETTLE=45

## bench-http: the API over HTTP loaded by wrk, in ROUNDS alternating rounds: the work tree's
## `serve --role api`, the same at BASELINE, the handler persisting nothing and a one-fsync-a-request
## reference, at 1, 64 and 256 connections (DURATION, CONNS, SPOOL_DIR_PARENT: see the script).
## Lines in bench-http.out, medians and ratios on stdout. ~13 minutes at the defaults.
bench-http:
	ROUNDS=$(ROUNDS) GO=$(GO) ./scripts/bench-http.sh

clean:
	rm -rf bin data bench.out bench-http.out bench-http.wrk.out

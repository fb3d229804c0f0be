# proxyto — build, run and test. `make help` lists the targets.

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO       ?= go
LISTEN   ?= 127.0.0.1:8080
ADMIN    ?= 127.0.0.1:9090
# go test -timeout for `make test`: the integration tests move ~1 GiB through
# slow sinks on purpose, and a loaded 2-core machine is slow.
TEST_TIMEOUT ?= 30m
# Per-target fuzzing time: short in `make test`, longer in `make fuzz`.
FUZZTIME ?= 5s
FUZZTIME_LONG ?= 2m

export PATH := $(PATH):/usr/local/go/bin

.PHONY: help build run test vet unit itest fuzz bench clean

help:
	@echo "make build   build bin/proxyto (VERSION=$(VERSION))"
	@echo "make run     run the gateway: clients on $(LISTEN), admin on $(ADMIN)"
	@echo "make test    install test dependencies, vet, race tests (unit + integration), short fuzzing"
	@echo "make itest   only the integration tests (go test ./itest/...)"
	@echo "make fuzz    fuzz every Fuzz target for FUZZTIME_LONG=$(FUZZTIME_LONG)"
	@echo "make bench   build, then run ../shared/bench against bin/proxyto"

build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/proxyto ./cmd/proxyto

run:
	$(GO) run -ldflags "-X main.version=$(VERSION)" ./cmd/proxyto --listen $(LISTEN) --admin $(ADMIN) --log-format console

test:
	./scripts/install-test-deps.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz-short.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /itest)

itest:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./itest/...

fuzz:
	FUZZTIME=$(FUZZTIME_LONG) ./scripts/fuzz-short.sh

bench: build
	./scripts/bench.sh

clean:
	rm -rf bin

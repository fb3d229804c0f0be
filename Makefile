# proxyto — build, run and test. `make help` lists the targets.

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO       ?= go
LISTEN   ?= 127.0.0.1:8080
ADMIN    ?= 127.0.0.1:9090
# go test -timeout for `make test`: the integration tests move ~1 GiB through
# slow sinks on purpose, and a loaded 2-core machine is slow.
TEST_TIMEOUT ?= 30m
# How long `make soak` runs its mixed client population (`make test` runs 20s).
DURATION ?= 20s
# Per-target fuzzing time: short in `make test`, longer in `make fuzz`.
FUZZTIME ?= 5s
FUZZTIME_LONG ?= 2m

export PATH := $(PATH):/usr/local/go/bin

# make scale-test: connections held and in flight at once, and extra
# scripts/scaletest flags (-hold 30s, -rate 5000, -phases hold, -plan, …).
N ?= 2000
SCALE_FLAGS ?=

.PHONY: help build run test vet unit itest fuzz bench clean promlint image-test chart-test k8s-manifests nginx-test vegeta bench-vegeta scale-test soak

help:
	@echo "make build   build bin/proxyto (VERSION=$(VERSION))"
	@echo "make run     run the gateway: clients on $(LISTEN), admin on $(ADMIN)"
	@echo "make test    install test dependencies, vet, race tests (unit + integration), a 20s soak, short fuzzing"
	@echo "make itest   only the integration tests (go test ./itest/...)"
	@echo "make soak    fault-injection soak against the real binary for DURATION=$(DURATION) (docs/soak.md)"
	@echo "make fuzz    fuzz every Fuzz target for FUZZTIME_LONG=$(FUZZTIME_LONG)"
	@echo "make bench   build, then run ../shared/bench against bin/proxyto"
	@echo "make image-test / chart-test / nginx-test   deployment artefacts, built and run (part of make test)"
	@echo "make k8s-manifests   regenerate deploy/k8s/ from the chart"
	@echo "make vegeta / bench-vegeta   load tests with vegeta"
	@echo "make scale-test N=100000   N tunnels held and N requests in flight through proxyto, one table (docs/scaling.md)"

build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/proxyto ./cmd/proxyto

run:
	$(GO) run -ldflags "-X main.version=$(VERSION)" ./cmd/proxyto --listen $(LISTEN) --admin $(ADMIN) --log-format console

test:
	./scripts/install-test-deps.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) soak DURATION=20s
	$(MAKE) promlint
	$(MAKE) scale-test N=2000 SCALE_FLAGS="-hold 2s"
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz-short.sh
	$(MAKE) chart-test
	$(MAKE) nginx-test
	$(MAKE) image-test

# Dashboard and alert rules checked with Prometheus's own parsers (own module).
promlint:
	cd observability/promlint && $(GO) test -count=1 ./...

# Container image: podman build (scratch, <25 MB), tunnel + plain request, /health, /metrics, HEALTHCHECK, SIGTERM exit 0 (root; installs podman/runc/debootstrap).
image-test:
	scripts/image-test.sh

# Helm chart: lint, render (defaults + charts/proxyto/ci/*.yaml), strict k8s decoding, deploy/k8s up to date (installs helm v3.22.0 once).
chart-test:
	scripts/chart-test.sh

# Regenerate deploy/k8s/*.yaml and the chart's copy of observability/alerts.yml.
k8s-manifests:
	deploy/k8s/generate.sh

# NGINX (stream, least_conn) in front of two replicas; drain one under traffic (root; installs nginx-full).
# Twice: plain, then with PROXY protocol (per-IP limits and logs see each client's address).
nginx-test:
	scripts/nginx-test.sh
	NGINX_PROXY_PROTOCOL=1 scripts/nginx-test.sh

# N tunnels held and N plain-HTTP requests in flight through proxyto (several
# processes sharing the port with --reuse-port when the descriptor limit
# demands), a latency probe, memory per connection, and --max-conns refusing
# the excess with 429; one table. As root it raises the sysctls it needs and
# restores them at exit. N=2000 runs in make test. See docs/scaling.md.
scale-test: build
	$(GO) build -o bin/scaletest ./scripts/scaletest
	bin/scaletest -n $(N) -proxyto bin/proxyto $(SCALE_FLAGS)

# vegeta through proxyto; results/vegeta-DATE/{report.txt,plot.html}. RATE, DURATION, CONNECTIONS, GATEWAY.
vegeta:
	scripts/vegeta.sh

# http + vegeta scenarios through ../shared/bench for direct, proxyto, goproxy.
bench-vegeta:
	scripts/bench-vegeta.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /itest)

itest:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./itest/...

# Fault-injecting upstreams, slowloris, leak and RSS checks; exits non-zero on
# any lost exchange, hang or leak. SOAK_FLAGS passes more (go run ./scripts/soak -h).
soak:
	$(GO) run ./scripts/soak -duration $(DURATION) $(SOAK_FLAGS)

fuzz:
	FUZZTIME=$(FUZZTIME_LONG) ./scripts/fuzz-short.sh

bench: build
	./scripts/bench.sh

clean:
	rm -rf bin

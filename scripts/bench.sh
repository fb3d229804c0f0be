#!/usr/bin/env bash
# Benchmarks bin/proxyto (build it with `make build`; `make bench` does) with
# the shared harness in ../shared/bench, side by side with its peers. Extra
# arguments go to ../shared/bench/run.sh (e.g. -peers direct,proxyto,squid).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/../shared/bench"
if [ ! -x "$bench/run.sh" ]; then
	echo "bench: $bench/run.sh not found; the benchmark harness lives beside this repository in ../shared/bench" >&2
	exit 1
fi
if [ ! -x "$root/bin/proxyto" ]; then
	echo "bench: $root/bin/proxyto missing; run 'make build' (or 'make bench')" >&2
	exit 1
fi
cd "$bench"
exec ./run.sh -proxyto-cmd "$root/bin/proxyto --listen {listen} --admin {admin}" "$@"

#!/usr/bin/env bash
# The vegeta scenario through the shared benchmark harness (../shared/bench):
# http load by loadgen and by vegeta through direct, proxyto and goproxy.
#   scripts/bench-vegeta.sh [more benchrun flags, e.g. -rounds 1 -http-duration 5s]
# Env: SHARED (default ../shared beside the repo), PROXYTO_BIN (default: go build
#      ./cmd/proxyto), OUT (results/bench-vegeta-DATE).
# vegeta comes from scripts/tools/go.mod and is put first on PATH for benchrun.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/tools/lib.sh"
SHARED=${SHARED:-$(cd "$REPO/.." && pwd)/shared}
[ -x "$SHARED/bench/run.sh" ] || [ -f "$SHARED/bench/run.sh" ] \
  || die "the shared benchmark harness is absent: $SHARED/bench/run.sh not found (set SHARED=...)"
OUT=${OUT:-$REPO/results/bench-vegeta-$(date +%Y%m%d-%H%M%S)}
W=$(mktemp -d /tmp/proxyto-bench-vegeta.XXXXXX)
trap 'rm -rf "$W"' EXIT

phase "build"
mkdir -p "$W/bin" "$OUT"
(cd "$REPO/scripts/tools" && go build -o "$W/bin/vegeta" github.com/tsenart/vegeta/v12) || die "building vegeta failed"
if [ -n "${PROXYTO_BIN:-}" ]; then BIN=$PROXYTO_BIN
else (cd "$REPO" && go build -trimpath -o "$W/bin/proxyto" ./cmd/proxyto) || die "go build ./cmd/proxyto failed"; BIN=$W/bin/proxyto; fi

phase "bench (http, vegeta)"
PATH=$W/bin:$PATH sh "$SHARED/bench/run.sh" -scenarios http,vegeta -peers direct,proxyto,goproxy \
  -proxyto-cmd "$BIN --listen {listen} --admin {admin}" -out "$OUT" "$@" || die "bench harness failed (see above)"
log "results in $OUT"
phase_report

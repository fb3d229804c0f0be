#!/usr/bin/env bash
# Load test with vegeta through proxyto (plain HTTP, X-Proxy-To on every request)
# to a loopback upstream proxy and origin (scripts/testupstream):
# writes results.bin, report.txt, report.json, hist.txt and plot.html (vegeta plot).
#
#   scripts/vegeta.sh                       builds and starts its own proxyto
#   GATEWAY=127.0.0.1:8080 scripts/vegeta.sh   attacks a proxyto already running
#
# Env: RATE (1000/1s), DURATION (10s), CONNECTIONS (50), OUT (results/vegeta-DATE),
#      MIN_SUCCESS (0.99: fail below), PROXYTO_BIN.
# vegeta is the Go tool of scripts/tools/go.mod (github.com/tsenart/vegeta/v12).
# Go never proxies loopback names, hence origin.test, which the test upstream maps
# to 127.0.0.1 (see ../shared/bench/README.md, "vegeta").
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/tools/lib.sh"

RATE=${RATE:-1000/1s} DURATION=${DURATION:-10s} CONNECTIONS=${CONNECTIONS:-50} MIN_SUCCESS=${MIN_SUCCESS:-0.99}
OUT=${OUT:-$REPO/results/vegeta-$(date +%Y%m%d-%H%M%S)}
W=$(mktemp -d /tmp/proxyto-vegeta.XXXXXX)
declare -A PIDS=()
cleanup() {
  local rc=$? n
  [ $rc -eq 0 ] || for n in "$W"/*.log; do [ -e "$n" ] && { printf '\n--- %s (tail) ---\n' "$(basename "$n")" >&2; tail -n 20 "$n" >&2; }; done
  for n in "${!PIDS[@]}"; do stop_pid "${PIDS[$n]}" 5; done
  rm -rf "$W"
}
trap cleanup EXIT

phase "build"
build_tools "$W/bin"
(cd "$REPO/scripts/tools" && go build -o "$W/bin/vegeta" github.com/tsenart/vegeta/v12) || die "building vegeta failed"
VEGETA=$W/bin/vegeta

phase "start upstream"
"$W/bin/testupstream" -auth bench:bench -hosts origin.test=127.0.0.1 -addr-file "$W/up.addr" >"$W/upstream.log" 2>&1 &
PIDS[upstream]=$!
wait_file "$W/up.addr" 10 || die "testupstream did not start"
UP=$(kv "$W/up.addr" proxy) ORIGIN_PORT=$(kv "$W/up.addr" origin | sed 's/.*://')

if [ -z "${GATEWAY:-}" ]; then
  phase "start proxyto"
  if [ -n "${PROXYTO_BIN:-}" ]; then BIN=$PROXYTO_BIN
  else (cd "$REPO" && go build -o "$W/proxyto" ./cmd/proxyto) || die "go build ./cmd/proxyto failed"; BIN=$W/proxyto; fi
  for _ in 1 2 3; do
    mapfile -t ports < <("$W/bin/freeport" -n 2)
    GATEWAY=127.0.0.1:${ports[0]} ADMIN=127.0.0.1:${ports[1]}
    "$BIN" --listen "$GATEWAY" --admin "$ADMIN" >"$W/proxyto.log" 2>&1 &
    PIDS[proxyto]=$!
    wait_http "http://$ADMIN/health" 10 "${PIDS[proxyto]}" && break
    grep -q 'address already in use' "$W/proxyto.log" || die "proxyto did not answer /health on $ADMIN"
    stop_pid "${PIDS[proxyto]}" 2; unset 'PIDS[proxyto]'
  done
  [ -n "${PIDS[proxyto]:-}" ] || die "proxyto: no free ports after 3 attempts"
fi
log "gateway $GATEWAY, upstream $UP, origin origin.test:$ORIGIN_PORT"

phase "attack"
mkdir -p "$OUT"
cat >"$OUT/targets.txt" <<TARGETS
GET http://origin.test:$ORIGIN_PORT/small
X-Proxy-To: bench:bench@$UP
TARGETS
# a first request checks the path before the load
curl -fsS -m 5 --noproxy '' -x "http://$GATEWAY" -H "X-Proxy-To: bench:bench@$UP" \
  -o /dev/null "http://origin.test:$ORIGIN_PORT/small" \
  || die "a single request through the gateway failed"
log "vegeta attack -rate $RATE -duration $DURATION -connections $CONNECTIONS"
env -u NO_PROXY -u no_proxy HTTP_PROXY="http://$GATEWAY" "$VEGETA" attack -targets "$OUT/targets.txt" \
  -rate "$RATE" -duration "$DURATION" -connections "$CONNECTIONS" -max-connections "$CONNECTIONS" -timeout 10s \
  >"$OUT/results.bin" 2>"$W/vegeta.log" || die "vegeta attack failed"

phase "report"
"$VEGETA" report <"$OUT/results.bin" | tee "$OUT/report.txt"
"$VEGETA" report -type=json <"$OUT/results.bin" >"$OUT/report.json"
"$VEGETA" report -type='hist[0,500us,1ms,2ms,5ms,10ms,50ms,100ms]' <"$OUT/results.bin" >"$OUT/hist.txt"
"$VEGETA" plot -title "proxyto $RATE for $DURATION, $CONNECTIONS connections" <"$OUT/results.bin" >"$OUT/plot.html"
success=$(sed -n 's/.*"success":\([0-9.e+-]*\).*/\1/p' "$OUT/report.json")
awk -v s="$success" -v m="$MIN_SUCCESS" 'BEGIN{exit !(s >= m)}' || die "success ratio $success below $MIN_SUCCESS (see $OUT/report.txt)"
log "results in $OUT (report.txt, report.json, hist.txt, plot.html); success $success"
phase_report

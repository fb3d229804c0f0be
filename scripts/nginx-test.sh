#!/usr/bin/env bash
# NGINX (stream, least_conn) in front of two proxyto replicas, all on loopback
# (make nginx-test): renders deploy/nginx/nginx.conf.tmpl into a temp dir, sends
# CONNECT tunnels and plain requests through NGINX to a loopback upstream proxy,
# then SIGTERMs the replica holding an in-flight request and checks that new
# traffic still succeeds through the other one, that the in-flight request
# completes, and that the stopped replica drains and exits 0.
# Installs nginx-full via apt-get if nginx or its stream module is missing.
#
# Env: PROXYTO_BIN (default: go build ./cmd/proxyto), KEEP=1 keeps the temp dir,
#      NGINX_PROXY_PROTOCOL=1 has NGINX send PROXY protocol headers to replicas that require them
#      and run with --max-conns-per-ip 1: a phase then proves that they see each client's own
#      address (127.0.0.2 and 127.0.0.3 through one NGINX) in per-IP limits and access logs,
#      and the drain phase's clients come from different addresses (they would be refused
#      as one client otherwise).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/tools/lib.sh"

W=$(mktemp -d /tmp/proxyto-nginx-test.XXXXXX)
declare -A PIDS=()   # name -> pid of everything this script started
DRAIN=20s

cleanup() {
  local rc=$? n
  if [ $rc -ne 0 ]; then
    for n in "$W"/*.log; do [ -e "$n" ] || continue; printf '\n--- %s (tail) ---\n' "$(basename "$n")" >&2; tail -n 25 "$n" >&2; done
  fi
  for n in "${!PIDS[@]}"; do stop_pid "${PIDS[$n]}" 3; done
  [ "${KEEP:-0}" = 1 ] && echo "kept $W" >&2 || rm -rf "$W"
  [ $rc -eq 0 ] && printf '\nnginx-test: PASS\n' >&2 || printf '\nnginx-test: FAIL (exit %d)\n' $rc >&2
}
trap cleanup EXIT

phase "install nginx"
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
has_stream() { nginx -V 2>&1 | grep -q -- '--with-stream\( \|$\)' || [ -e "$stream_module" ]; }
if ! command -v nginx >/dev/null || ! has_stream; then
  [ "$(id -u)" = 0 ] || die "nginx with the stream module is missing and this is not root"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq nginx-full libnginx-mod-stream >"$W/apt.log" 2>&1 \
    || { cat "$W/apt.log" >&2; die "apt-get install nginx-full failed"; }
  # Debian may start its own nginx service: this script never uses it.
fi
load_module=""
nginx -V 2>&1 | grep -q -- '--with-stream=dynamic' && load_module="load_module $stream_module;"

phase "build"
build_tools "$W/bin"
if [ -n "${PROXYTO_BIN:-}" ]; then
  BIN=$PROXYTO_BIN
else
  (cd "$REPO" && go build -o "$W/proxyto" ./cmd/proxyto) || die "go build ./cmd/proxyto failed"
  BIN=$W/proxyto
fi

phase "start upstream and replicas"
"$W/bin/testupstream" -addr-file "$W/up.addr" >"$W/upstream.log" 2>&1 &
PIDS[upstream]=$!
wait_file "$W/up.addr" 10 || die "testupstream did not start"
UP=$(kv "$W/up.addr" proxy) ORIGIN=$(kv "$W/up.addr" origin)

# NGINX_PROXY_PROTOCOL=1: NGINX sends PROXY protocol headers and the replicas
# require them from loopback (deploy/nginx/nginx.conf.tmpl @@PROXY_PROTOCOL@@).
PP=${NGINX_PROXY_PROTOCOL:-0} PP_ARGS=() PP_LINE=""
if [ "$PP" = 1 ]; then
  PP_ARGS=(--proxy-protocol-from 127.0.0.0/8 --max-conns-per-ip 1) PP_LINE="proxy_protocol on;"
fi
declare -A LISTEN=() ADMIN=()
start_replica() { # start_replica NAME: start it on fresh ports, retrying when a port is taken
  local name=$1 attempt ports
  for attempt in 1 2 3; do
    mapfile -t ports < <("$W/bin/freeport" -n 2)
    LISTEN[$name]=127.0.0.1:${ports[0]} ADMIN[$name]=127.0.0.1:${ports[1]}
    "$BIN" --listen "${LISTEN[$name]}" --admin "${ADMIN[$name]}" --drain-timeout "$DRAIN" "${PP_ARGS[@]}" >"$W/$name.log" 2>&1 &
    PIDS[$name]=$!
    wait_http "http://${ADMIN[$name]}/health" 10 "${PIDS[$name]}" && return 0
    if grep -q 'address already in use' "$W/$name.log"; then log "$name: port taken (attempt $attempt), retrying"; stop_pid "${PIDS[$name]}" 2; continue; fi
    die "$name did not answer /health on ${ADMIN[$name]}"
  done
  die "$name: no free ports after 3 attempts"
}
start_replica a
start_replica b
log "replica a: ${LISTEN[a]} (admin ${ADMIN[a]}), b: ${LISTEN[b]} (admin ${ADMIN[b]}); upstream $UP, origin $ORIGIN"

phase "start nginx"
nofile=$(ulimit -Hn)
servers="server ${LISTEN[a]} max_fails=2 fail_timeout=10s; server ${LISTEN[b]} max_fails=2 fail_timeout=10s;"
render_nginx() { # render_nginx LISTEN
  grep -v '^[[:space:]]*#' "$REPO/deploy/nginx/nginx.conf.tmpl" | sed \
    -e "s|@@LOAD_MODULE@@|$load_module|" -e "s|@@USER@@|user nobody nogroup;|" \
    -e "s|@@PREFIX@@|$W|g" -e "s|@@LISTEN@@|$1|" -e "s|@@SERVERS@@|$servers|" \
    -e "s|@@NOFILE@@|$nofile|" -e "s|@@WORKER_CONNECTIONS@@|$((nofile / 2))|" \
    -e "s|@@TUNNEL_TIMEOUT@@|5m|" -e "s|@@PROXY_PROTOCOL@@|$PP_LINE|" >"$W/nginx.conf"
}
for _ in 1 2 3; do
  NGX=127.0.0.1:$("$W/bin/freeport")
  render_nginx "$NGX"
  nginx -t -p "$W" -c "$W/nginx.conf" >"$W/nginx-t.log" 2>&1 || { cat "$W/nginx-t.log" >&2; die "nginx -t failed"; }
  nginx -p "$W" -c "$W/nginx.conf" -g 'daemon off;' >"$W/nginx.log" 2>&1 &
  PIDS[nginx]=$!
  up=0
  for ((i = 0; i < 50; i++)); do
    if (exec 3<>"/dev/tcp/${NGX%:*}/${NGX#*:}") 2>/dev/null; then up=1; break; fi
    kill -0 "${PIDS[nginx]}" 2>/dev/null || break
    sleep 0.1
  done
  [ $up = 1 ] && break
  grep -q 'Address already in use' "$W/error.log" "$W/nginx.log" 2>/dev/null && { log "nginx: port taken, retrying"; stop_pid "${PIDS[nginx]}" 2; continue; }
  die "nginx did not listen on $NGX"
done
[ "$up" = 1 ] || die "nginx: no free port after 3 attempts"
log "nginx (pid ${PIDS[nginx]}) on $NGX"

# tunnel PATH [FROM] / plain PATH [FROM]: one request through NGINX, from
# the loopback address FROM (default 127.0.0.1); prints the body.
tunnel() { curl -fsS -m 15 --noproxy '' --interface "${2:-127.0.0.1}" -p -x "http://$NGX" --proxy-header "X-Proxy-To: $UP" "http://$ORIGIN$1"; }
plain() { curl -fsS -m 15 --noproxy '' --interface "${2:-127.0.0.1}" -x "http://$NGX" -H "X-Proxy-To: $UP" "http://$ORIGIN$1"; }
# status PATH FROM: the status code of a plain request from FROM.
status() { curl -s -o /dev/null -w '%{http_code}' -m 15 --noproxy '' --interface "$2" -x "http://$NGX" -H "X-Proxy-To: $UP" "http://$ORIGIN$1" || true; }
# served NAME: requests and tunnels this replica finished (sum of proxyto_requests_total).
served() { curl -fsS -m 2 --noproxy '*' "http://${ADMIN[$1]}/metrics" 2>/dev/null | awk '/^proxyto_requests_total/{s+=$NF} END{print s+0}'; }
# open_conns NAME: client connections open now (proxyto_client_connections).
open_conns() { curl -fsS -m 2 --noproxy '*' "http://${ADMIN[$1]}/metrics" 2>/dev/null | awk '/^proxyto_client_connections /{print $NF+0; f=1} END{if(!f)print 0}'; }

phase "traffic through nginx"
for i in $(seq 10); do
  [ "$(tunnel /)" = "origin ok" ] || die "tunnel $i through nginx failed"
  [ "$(plain /small | wc -c)" -eq 128 ] || die "plain request $i through nginx failed"
done
sa=$(served a) sb=$(served b)
log "20 tunnels and plain requests ok; replica a served $sa, b served $sb"
[ "$sa" -gt 0 ] && [ "$sb" -gt 0 ] || die "least_conn did not spread the load over both replicas (a=$sa b=$sb)"

if [ "$PP" = 1 ]; then
  phase "client addresses through PROXY protocol"
  # Two slow tunnels from 127.0.0.2, one on each replica (least_conn): with
  # --max-conns-per-ip 1 a third connection from 127.0.0.2 is refused
  # wherever it lands, while 127.0.0.3, through the same NGINX, is served.
  tunnel "/slow?d=3s" 127.0.0.2 >"$W/pp1.out" 2>"$W/pp1.err" & PIDS[pp1]=$!
  tunnel "/slow?d=3s" 127.0.0.2 >"$W/pp2.out" 2>"$W/pp2.err" & PIDS[pp2]=$!
  for ((i = 0; i < 50; i++)); do [ $(($(open_conns a) + $(open_conns b))) -ge 2 ] && break; sleep 0.1; done
  [ "$(open_conns a)" = 1 ] && [ "$(open_conns b)" = 1 ] || die "the two slow tunnels are not one per replica (a=$(open_conns a) b=$(open_conns b))"
  code=$(status /small 127.0.0.2)
  [ "$code" = 429 ] || die "a third connection from 127.0.0.2 got $code, want 429 (--max-conns-per-ip 1 by the PROXY header's address)"
  [ "$(plain /small 127.0.0.3 | wc -c)" -eq 128 ] || die "127.0.0.3 was not served beside 127.0.0.2's connections"
  for s in pp1 pp2; do
    wait "${PIDS[$s]}" || { cat "$W/$s.err" >&2; die "slow tunnel $s from 127.0.0.2 failed"; }
    unset "PIDS[$s]"
  done
  # Access lines are written by a buffered writer: give it a moment.
  seen=0
  for ((i = 0; i < 50; i++)); do
    grep -qh '"client":"127.0.0.2:' "$W/a.log" "$W/b.log" && grep -qh '"client":"127.0.0.3:' "$W/a.log" "$W/b.log" && { seen=1; break; }
    sleep 0.1
  done
  [ $seen = 1 ] || die "the replicas' access logs do not show the clients 127.0.0.2 and 127.0.0.3"
  log "per-IP limits and access logs see 127.0.0.2 and 127.0.0.3 through one NGINX"
fi

phase "drain one replica"
# Two slow requests (4 s each) in flight: least_conn puts one on each replica.
# They come from addresses of their own: with PROXY protocol and
# --max-conns-per-ip 1, the requests from 127.0.0.1 during the drain must
# not share an address with them.
tunnel "/slow?d=4s" 127.0.0.2 >"$W/slow1.out" 2>"$W/slow1.err" & PIDS[slow1]=$!
sleep 0.3
plain "/slow?d=4s" 127.0.0.3 >"$W/slow2.out" 2>"$W/slow2.err" & PIDS[slow2]=$!
sleep 0.5
victim=a other=b
[ "$(open_conns a)" -gt 0 ] || { victim=b other=a; }
log "in flight: a=$(open_conns a) b=$(open_conns b); SIGTERM to replica $victim (pid ${PIDS[$victim]})"
kill -TERM "${PIDS[$victim]}"
sleep 0.3
ready=$(curl -s -o /dev/null -w '%{http_code}' -m 2 --noproxy '*' "http://${ADMIN[$victim]}/ready" || true)
log "replica $victim /ready while draining: $ready"
kill -0 "${PIDS[$victim]}" 2>/dev/null && log "replica $victim still running (draining)" || log "replica $victim already exited"
for i in $(seq 10); do
  [ "$(tunnel /)" = "origin ok" ] || die "tunnel $i during the drain failed"
  [ "$(plain /small | wc -c)" -eq 128 ] || die "plain request $i during the drain failed"
done
log "20 new tunnels and plain requests during the drain ok"
for s in slow1 slow2; do
  wait "${PIDS[$s]}" || { cat "$W/$s.err" >&2; die "in-flight request $s failed during the drain"; }
  unset "PIDS[$s]"
  grep -q 'slow done' "$W/$s.out" || die "in-flight request $s was cut short"
done
log "both in-flight requests completed"
for ((i = 0; i < 300; i++)); do kill -0 "${PIDS[$victim]}" 2>/dev/null || break; sleep 0.1; done
kill -0 "${PIDS[$victim]}" 2>/dev/null && die "replica $victim still running 30 s after SIGTERM (drain $DRAIN)"
set +e; wait "${PIDS[$victim]}"; code=$?; set -e
unset "PIDS[$victim]"
[ "$code" = 0 ] || die "replica $victim exited $code after SIGTERM, want 0"
log "replica $victim drained and exited 0"
[ "$(tunnel /)" = "origin ok" ] && [ "$(plain /small | wc -c)" -eq 128 ] || die "traffic after the drain failed"
log "traffic after the drain ok (replica $other)"

phase_report

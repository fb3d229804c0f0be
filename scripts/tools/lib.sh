# shellcheck shell=bash disable=SC2120,SC2119
# Shell helpers shared by scripts/image-test.sh, nginx-test.sh, vegeta.sh.
# Source it after `set -euo pipefail`; it defines functions only.

# log MSG: a timestamped line on stderr.
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# die MSG: print MSG and exit 1 (the caller's EXIT trap prints logs and cleans up).
die() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# phase NAME: close the running phase (printing its duration) and open NAME.
# `phase` with no argument only closes. phase_report prints them all.
_phase_name="" _phase_start=0 _phase_lines=()
_now() { date +%s.%N; }
phase() {
  local now; now=$(_now)
  if [ -n "$_phase_name" ]; then
    local d; d=$(awk -v a="$_phase_start" -v b="$now" 'BEGIN{printf "%.1f", b-a}')
    _phase_lines+=("$(printf '%-40s %7ss' "$_phase_name" "$d")")
    log "phase '$_phase_name' done in ${d}s"
  fi
  _phase_name=${1:-} _phase_start=$now
  [ -z "$_phase_name" ] || log "phase '$_phase_name'"
}
phase_report() {
  phase
  printf '\nphase timings:\n' >&2
  local l; for l in "${_phase_lines[@]}"; do printf '  %s\n' "$l" >&2; done
}

# wait_http URL SECONDS [PID]: wait until URL answers 200; fail early if PID dies.
wait_http() {
  local url=$1 secs=$2 pid=${3:-} i
  for ((i = 0; i < secs * 10; i++)); do
    if curl -fsS -o /dev/null -m 1 --noproxy '*' "$url" 2>/dev/null; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# wait_file FILE SECONDS: wait until FILE exists.
wait_file() {
  local f=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do [ -s "$f" ] && return 0; sleep 0.1; done
  return 1
}

# kv FILE KEY: the value of KEY=VALUE in FILE.
kv() { sed -n "s/^$2=//p" "$1"; }

# stop_pid PID [SECONDS]: SIGTERM a process this script started, SIGKILL it after SECONDS (5).
stop_pid() {
  local pid=$1 secs=${2:-5} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

# build_tools DIR: build the scripts' helper commands into DIR: freeport
# (scripts/tools) and testupstream (scripts/testupstream, the itest harness's
# upstream proxy and origin as a process). REPO must be set.
build_tools() {
  (cd "$REPO/scripts/tools" && go build -o "$1/" ./cmd/...) &&
    (cd "$REPO" && go build -o "$1/" ./scripts/testupstream)
}

#!/usr/bin/env bash
# Builds the container image with podman and checks it end to end (make image-test):
#   size < 25 MB; starts on host networking with ports picked now; one CONNECT
#   tunnel and one plain HTTP request through it to a loopback upstream proxy;
#   /health and /metrics; the image's HEALTHCHECK; SIGTERM drain exits 0.
# Idempotent: installs podman/runc/debootstrap if missing and builds the local
# stand-in for golang:1.26-bookworm once (no registry is used: --pull=never).
# Why runc and explicit ulimits: on hosts with a hybrid cgroup layout crun
# refuses to run ("cgroups in hybrid mode not supported"), and without
# CAP_SYS_RESOURCE podman's default rlimits (above the shell's hard limits)
# cannot be set, so the containers.conf below pins both.
#
# Env: IMAGE (default localhost/proxyto:image-test), VERSION (git describe),
#      KEEP_IMAGE=1 keeps the built image.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/tools/lib.sh"

IMAGE=${IMAGE:-localhost/proxyto:image-test}
BASE=localhost/golang:1.26-bookworm
NAME=proxyto-image-test-$$
MAX_BYTES=$((25 * 1000 * 1000))
VERSION=${VERSION:-$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo dev)}
W=$(mktemp -d /tmp/proxyto-image-test.XXXXXX)
UP_PID=""

cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    printf '\n--- container logs (%s) ---\n' "$NAME" >&2
    podman logs "$NAME" >&2 2>&1 || true
    printf -- '--- upstream log ---\n' >&2; cat "$W/upstream.log" >&2 2>/dev/null || true
    [ ! -e "$W/build.failed" ] || { printf -- '--- build log (tail) ---\n' >&2; tail -n 40 "$W/build.log" >&2; }
    printf -- '--- podman run/stop messages ---\n' >&2; cat "$W/podman.log" >&2 2>/dev/null || true
  fi
  podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  [ -z "$UP_PID" ] || stop_pid "$UP_PID" 3
  [ "${KEEP_IMAGE:-0}" = 1 ] || [ $rc -ne 0 ] || podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$W"
  [ $rc -eq 0 ] && printf '\nimage-test: PASS\n' >&2 || printf '\nimage-test: FAIL (exit %d)\n' $rc >&2
}
trap cleanup EXIT

phase "install packages"
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || die "podman, runc and debootstrap are missing and this is not root"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq podman runc debootstrap >"$W/apt.log" 2>&1 \
    || { cat "$W/apt.log" >&2; die "apt-get install podman runc debootstrap failed"; }
fi

# runc (crun fails on this hybrid cgroup layout) and rlimits within the hard limits.
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' \
  "$(ulimit -Hn)" "$(ulimit -Hn)" >"$W/containers.conf"
export CONTAINERS_CONF=$W/containers.conf

phase "stand-in $BASE"
if ! podman image exists "$BASE"; then
  command -v go >/dev/null || die "go is needed to build the stand-in image"
  GOROOT_HOST=$(go env GOROOT)
  log "debootstrap minbase bookworm (~30 s)"
  debootstrap --variant=minbase bookworm "$W/rootfs" >"$W/debootstrap.log" 2>&1 \
    || { tail -n 30 "$W/debootstrap.log" >&2; die "debootstrap failed"; }
  cp -a "$GOROOT_HOST" "$W/rootfs/usr/local/go"
  mkdir -p "$W/rootfs/etc/ssl/certs" "$W/rootfs/usr/local/share/ca-certificates"
  cp /etc/ssl/certs/ca-certificates.crt "$W/rootfs/etc/ssl/certs/"
  cp /usr/local/share/ca-certificates/*.crt "$W/rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
  tar -C "$W/rootfs" -c . | podman import \
    --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV GOPATH=/go' --change 'ENV GOTOOLCHAIN=local' --change 'WORKDIR /go' - "$BASE" >/dev/null
  rm -rf "$W/rootfs"
fi

phase "build tools"
build_tools "$W/bin"

phase "podman build"
build_args=(--build-arg "VERSION=$VERSION")
# --layers=false: no intermediate images pile up; the Go caches (cache mounts) keep rebuilds fast.
podman build --pull=never --network host --layers=false --format docker "${build_args[@]}" -t "$IMAGE" "$REPO" >"$W/build.log" 2>&1 \
  || { touch "$W/build.failed"; die "podman build failed"; }

phase "size check"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "image $IMAGE: $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.1f", s/1e6}') MB)"
[ "$size" -lt "$MAX_BYTES" ] || die "image is $size bytes, over the $MAX_BYTES limit"
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = "65532:65532" ] || die "image user is '$user', want 65532:65532"

phase "start upstream"
"$W/bin/testupstream" -addr-file "$W/up.addr" >"$W/upstream.log" 2>&1 &
UP_PID=$!
wait_file "$W/up.addr" 10 || die "testupstream did not start"
UP=$(kv "$W/up.addr" proxy) ORIGIN=$(kv "$W/up.addr" origin)
log "upstream proxy $UP, origin $ORIGIN"

phase "start container"
started=0
for attempt in 1 2 3; do
  mapfile -t ports < <("$W/bin/freeport" -n 2)
  LISTEN=127.0.0.1:${ports[0]} ADMIN=127.0.0.1:${ports[1]}
  podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  # Env, not flags, so that the image's HEALTHCHECK (proxyto healthcheck) reads the same PROXYTO_ADMIN.
  # Without systemd, podman logs errors about healthcheck timers (harmless): they go to podman.log.
  podman run -d --pull=never --name "$NAME" --network host --health-interval=disable \
    -e PROXYTO_LISTEN="$LISTEN" -e PROXYTO_ADMIN="$ADMIN" -e PROXYTO_DRAIN_TIMEOUT=30s \
    "$IMAGE" >/dev/null 2>>"$W/podman.log" || die "podman run failed"
  for ((i = 0; i < 100; i++)); do
    if curl -fsS -o /dev/null -m 1 --noproxy '*' "http://$ADMIN/health" 2>/dev/null; then started=1; break; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || break
    sleep 0.1
  done
  [ $started = 1 ] && break
  if podman logs "$NAME" 2>&1 | grep -q 'address already in use'; then
    log "attempt $attempt: port taken, retrying with new ports"; continue
  fi
  die "container did not answer /health on $ADMIN within 10 s (state: $(podman inspect --format '{{.State.Status}} exit={{.State.ExitCode}}' "$NAME"))"
done
[ $started = 1 ] || die "no free ports after 3 attempts"
log "container $NAME: listen $LISTEN, admin $ADMIN"

phase "traffic"
body=$(curl -fsS -m 10 --noproxy '' -p -x "http://$LISTEN" --proxy-header "X-Proxy-To: $UP" "http://$ORIGIN/") \
  || die "CONNECT tunnel through the container failed"
[ "$body" = "origin ok" ] || die "CONNECT tunnel: unexpected body '$body'"
log "CONNECT tunnel ok"
curl -fsS -m 10 --noproxy '' -x "http://$LISTEN" -H "X-Proxy-To: $UP" -D "$W/plain.h" -o "$W/plain.b" "http://$ORIGIN/small" \
  || die "plain HTTP request through the container failed"
grep -qi '^via:.*testupstream' "$W/plain.h" || { cat "$W/plain.h" >&2; die "plain request did not pass through the upstream"; }
[ "$(wc -c <"$W/plain.b")" -eq 128 ] || die "plain request: body is not 128 bytes"
log "plain HTTP request ok"
stats=$(curl -fsS -m 2 --noproxy '*' "http://$ORIGIN/stats")
grep -q '^tunnels=[1-9]' <<<"$stats" && grep -q '^forwards=[1-9]' <<<"$stats" || die "upstream saw: $stats"

phase "admin endpoints"
curl -fsS -m 2 --noproxy '*' "http://$ADMIN/health" >/dev/null || die "/health failed"
curl -fsS -m 2 --noproxy '*' "http://$ADMIN/ready" >/dev/null || die "/ready failed"
curl -fsS -m 2 --noproxy '*' "http://$ADMIN/metrics" >"$W/metrics" || die "/metrics failed"
grep -q '^proxyto_' "$W/metrics" || die "/metrics has no proxyto_ series"
log "/health, /ready, /metrics ok ($(grep -c '^proxyto_' "$W/metrics") proxyto_ samples)"

phase "healthcheck"
if out=$(podman healthcheck run "$NAME" 2>&1); then
  log "podman healthcheck run: ${out:-healthy}"
else
  log "podman healthcheck run unavailable here ($out); running the image's healthcheck command instead"
  podman run --rm --pull=never --network host -e PROXYTO_ADMIN="$ADMIN" "$IMAGE" healthcheck || die "proxyto healthcheck failed"
fi
# and the check must fail when nothing answers
closed=$("$W/bin/freeport")
if podman run --rm --pull=never --network host -e PROXYTO_ADMIN="127.0.0.1:$closed" "$IMAGE" healthcheck >/dev/null 2>&1; then
  die "proxyto healthcheck exited 0 with no admin listener"
fi

phase "SIGTERM drain"
podman stop -t 40 "$NAME" >/dev/null 2>>"$W/podman.log" || die "podman stop failed"
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] || die "container exited $code after SIGTERM, want 0"
log "stopped, exit code 0"

phase_report
log "image size: $size bytes"

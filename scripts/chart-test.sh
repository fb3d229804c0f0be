#!/usr/bin/env bash
# Lints and renders the Helm chart and runs the manifest tests (make chart-test):
#   helm lint + helm template with the defaults and each charts/proxyto/ci/*.yaml;
#   deploy/chartcheck: strict decoding into k8s.io/api types, pod-spec checks,
#   config keys vs cmd/proxyto/run.go flags, deploy/k8s up to date.
# Installs helm v3.22.0 with `go install` into $(go env GOPATH)/bin when missing
# (~2.5 min cold, then skipped). No cluster and no network beyond the module proxy.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/tools/lib.sh"
HELM_VERSION=v3.22.0  # go-installed helm reports only v3.22
CHART=$REPO/charts/proxyto
W=$(mktemp -d /tmp/proxyto-chart-test.XXXXXX)
# shellcheck disable=SC2154 # rc is set inside the trap
trap 'rc=$?; rm -rf "$W"; [ $rc -eq 0 ] && echo "chart-test: PASS" >&2 || echo "chart-test: FAIL (exit $rc)" >&2' EXIT

phase "helm"
GOBIN_DIR=$(go env GOPATH)/bin
HELM=${HELM:-$GOBIN_DIR/helm}
if [ ! -x "$HELM" ] || ! "$HELM" version --short 2>/dev/null | grep -q "^${HELM_VERSION%.*}"; then
  log "installing helm $HELM_VERSION with go install (~2.5 min cold)"
  GOBIN=$GOBIN_DIR go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || die "go install helm failed"
  HELM=$GOBIN_DIR/helm
fi
export HELM
log "$("$HELM" version --short)"

phase "helm lint/template"
cases=("")
for f in "$CHART"/ci/*.yaml; do cases+=("$f"); done
for f in "${cases[@]}"; do
  args=(); label=defaults
  [ -z "$f" ] || { args=(-f "$f"); label=$(basename "$f"); }
  "$HELM" lint --strict "$CHART" "${args[@]}" >"$W/lint.log" 2>&1 || { cat "$W/lint.log" >&2; die "helm lint ($label) failed"; }
  "$HELM" template proxyto "$CHART" --namespace proxyto "${args[@]}" >"$W/render.yaml" 2>"$W/render.err" \
    || { cat "$W/render.err" >&2; die "helm template ($label) failed"; }
  log "$label: lint ok, $(grep -c '^kind:' "$W/render.yaml") objects: $(grep '^kind:' "$W/render.yaml" | awk '{print $2}' | sort | tr '\n' ' ')"
done
# Values the chart must refuse.
if "$HELM" template proxyto "$CHART" --set config.no-such-flag=1 >/dev/null 2>&1; then die "an unknown config key was accepted"; fi
if "$HELM" template proxyto "$CHART" --set kind=StatefulSet >/dev/null 2>&1; then die "kind=StatefulSet was accepted"; fi
if "$HELM" template proxyto "$CHART" --set nodeSysctls.enabled=true >/dev/null 2>&1; then die "nodeSysctls on a Deployment was accepted"; fi
if "$HELM" template proxyto "$CHART" --set goMemLimit=50% --set resources.limits.memory=1e9 >/dev/null 2>&1; then die "goMemLimit=50% of an unreadable memory limit was accepted"; fi

phase "chartcheck (go test)"
(cd "$REPO/deploy/chartcheck" && go vet ./... && go test -count=1 ./...) || die "deploy/chartcheck failed (if only deploy/k8s is stale: deploy/k8s/generate.sh)"

phase_report

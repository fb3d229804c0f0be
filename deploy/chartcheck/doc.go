// Package chartcheck holds the tests of the Helm chart (charts/proxyto) and of
// the plain manifests rendered from it (deploy/k8s): every rendered object is
// decoded strictly into its k8s.io/api type, the pod spec is checked for the
// properties the chart promises (security context, probes, grace period longer
// than the drain), the chart's config keys are checked against the flags of
// cmd/proxyto/run.go, and deploy/k8s is compared with a fresh `helm template`.
//
// Run it with scripts/chart-test.sh, which provides helm; `go test` alone uses
// $HELM, then helm on PATH, then $(go env GOPATH)/bin/helm, and skips without one.
package chartcheck

// Package promlint checks observability/grafana-dashboard.json and
// observability/alerts.yml with Prometheus's own PromQL parser and rule-file
// loader, against the metric list in observability/testdata/metrics.txt,
// which observability's TestMetricsList keeps equal to the registry.
//
// It is a separate module so that github.com/prometheus/prometheus and its
// dependency graph stay out of proxyto's go.mod; it imports nothing from
// proxyto. Run it from this directory with
//
//	go test -count=1 ./...
//
// (-count=1 because the files it reads lie outside the module, where the test
// cache does not see them change). The repository's test target runs it.
package promlint

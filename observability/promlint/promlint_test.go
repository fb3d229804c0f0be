package promlint

import (
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// exported reads ../testdata/metrics.txt, which the observability package's
// TestMetricsList keeps equal to its registry, and maps every series name to
// its label names plus the target labels job and instance. "up", which
// Prometheus adds per target, is included.
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../testdata/metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	target := func() map[string]bool { return map[string]bool{"job": true, "instance": true} }
	names := map[string]map[string]bool{"up": target()}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, labels, _ := strings.Cut(line, " ")
		set := target()
		for _, l := range strings.Split(labels, ",") {
			if l != "" {
				set[l] = true
			}
		}
		names[name] = set
	}
	if len(names) < 20 {
		t.Fatalf("metrics list has only %d names", len(names))
	}
	return names
}

// checkExpr parses expr and reports selectors of metrics proxyto does not
// export or of labels those metrics do not have. It returns the names it
// found.
func checkExpr(t *testing.T, where, expr string, names map[string]map[string]bool) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %v\n%s", where, err, expr)
		return nil
	}
	var found []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			t.Errorf("%s: selector without a metric name: %s", where, vs)
			return nil
		}
		found = append(found, name)
		labels, ok := names[name]
		if !ok {
			t.Errorf("%s: %s is not exported by proxyto", where, name)
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel && !labels[m.Name] {
				t.Errorf("%s: %s has no label %q", where, name, m.Name)
			}
		}
		return nil
	})
	if len(found) == 0 {
		t.Errorf("%s: expression selects no metric: %s", where, expr)
	}
	return found
}

// grafanaVars replaces the dashboard's template variables with values the
// PromQL parser accepts.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "1h",
	"$job", ".+",
	"$instance", ".+",
)

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func TestDashboardPromQL(t *testing.T) {
	b, err := os.ReadFile("../grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string  `json:"uid"`
		Title  string  `json:"title"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Fatal("dashboard lacks uid or title")
	}
	names := exported(t)
	n := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				n++
				checkExpr(t, "panel "+p.Title, grafanaVars.Replace(tg.Expr), names)
			}
		}
	}
	walk(d.Panels)
	if n == 0 {
		t.Fatal("dashboard has no expressions")
	}
}

func TestAlertRules(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile("../alerts.yml", false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		return
	}
	names := exported(t)
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: rule %q is not an alert", g.Name, r.Record)
				continue
			}
			alerts++
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs summary and description", r.Alert)
			}
			checkExpr(t, "alert "+r.Alert, r.Expr, names)
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts")
	}
}

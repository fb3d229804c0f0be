package chartcheck

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

// k8sFiles maps each plain manifest in deploy/k8s to the helm values it is
// rendered with (see deploy/k8s/generate.sh, which must agree).
var k8sFiles = map[string][]string{
	"proxyto.yaml":           nil,
	"proxyto-daemonset.yaml": {"-f", chartDir + "/ci/daemonset-values.yaml"},
}

// TestPlainManifestsUpToDate fails when deploy/k8s differs from helm template.
func TestPlainManifestsUpToDate(t *testing.T) {
	for file, args := range k8sFiles {
		t.Run(file, func(t *testing.T) {
			want := render(t, args...)
			got, err := os.ReadFile(k8sDir + "/" + file)
			if err != nil {
				t.Fatalf("%v (regenerate: %s)", err, regenerate)
			}
			if got = stripHeader(got); !bytes.Equal(got, want) {
				t.Errorf("deploy/k8s/%s is out of date with charts/proxyto: run %s\n%s", file, regenerate, firstDiff(got, want))
			}
			decode(t, splitDocs(t, got))
		})
	}
}

// stripHeader drops generate.sh's leading comment lines (up to the first ---).
func stripHeader(b []byte) []byte {
	if i := bytes.Index(b, []byte("---\n")); i > 0 {
		return b[i:]
	}
	return b
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "first difference at line " + itoa(i+1) + ":\n  file:  " + gl + "\n  chart: " + wl
		}
	}
	return ""
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestAlertsCopied fails when the chart's copy of the alert rules differs from
// observability/alerts.yml.
func TestAlertsCopied(t *testing.T) {
	want, err := os.ReadFile("../../observability/alerts.yml")
	if os.IsNotExist(err) {
		t.Skip("observability/alerts.yml absent")
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(chartDir + "/files/alerts.yml")
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("charts/proxyto/files/alerts.yml differs from observability/alerts.yml (%v): run %s", err, regenerate)
	}
}

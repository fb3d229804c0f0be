package chartcheck

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Paths relative to this package's folder.
const (
	chartDir   = "../../charts/proxyto"
	k8sDir     = "../k8s"
	runGo      = "../../cmd/proxyto/run.go"
	release    = "proxyto"
	namespace  = "proxyto"
	regenerate = "deploy/k8s/generate.sh"
)

// helmPath finds helm: $HELM, PATH, then $(go env GOPATH)/bin/helm.
func helmPath(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		if _, err := os.Stat(h); err != nil {
			t.Fatalf("HELM=%s: %v", h, err)
		}
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		h := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(h); err == nil {
			return h
		}
	}
	t.Skip("helm not found ($HELM, PATH, GOPATH/bin): run scripts/chart-test.sh, which installs it")
	return ""
}

// render runs helm template with the given values files and extra args.
func render(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helmPath(t), append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// renderCases are the value sets every check runs on: the defaults and each
// file in the chart's ci/ folder.
func renderCases(t *testing.T) map[string][]string {
	t.Helper()
	cases := map[string][]string{"defaults": nil}
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", chartDir, err)
	}
	for _, f := range files {
		cases[filepath.Base(f)] = []string{"-f", f}
	}
	return cases
}

// doc is one rendered manifest.
type doc struct {
	source string // "# Source:" line, for messages
	raw    []byte
	meta   struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
}

func (d doc) String() string {
	return fmt.Sprintf("%s %s (%s)", d.meta.Kind, d.meta.Metadata.Name, d.source)
}

// splitDocs splits a multi-document YAML stream, dropping empty documents.
func splitDocs(t *testing.T, stream []byte) []doc {
	t.Helper()
	var docs []doc
	for _, part := range bytes.Split(append([]byte("\n"), stream...), []byte("\n---")) {
		var d doc
		body := &bytes.Buffer{}
		for _, line := range strings.Split(string(part), "\n") {
			if src, ok := strings.CutPrefix(line, "# Source: "); ok {
				d.source = src
			}
			body.WriteString(line + "\n")
		}
		d.raw = body.Bytes()
		var probe map[string]any
		if err := yaml.Unmarshal(d.raw, &probe); err != nil {
			t.Fatalf("%s: not YAML: %v", d.source, err)
		}
		if len(probe) == 0 {
			continue
		}
		if err := yaml.Unmarshal(d.raw, &d.meta); err != nil {
			t.Fatalf("%s: %v", d.source, err)
		}
		docs = append(docs, d)
	}
	return docs
}

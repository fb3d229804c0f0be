package httpparse

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps httpparse a pure leaf: its non-test
// code may import only these standard packages.
func TestImports(t *testing.T) {
	allowed := map[string]string{
		"bytes":     "byte search",
		"errors":    "sentinels",
		"math":      "overflow bounds",
		"net/netip": "PROXY protocol addresses: value types, no I/O",
		"strconv":   "decimal formatting",
		"strings":   "trimming configuration entries",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "gen_tables.go" {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if _, ok := allowed[p]; !ok {
				t.Errorf("%s imports %q: httpparse must stay a pure, dependency-free parser (no net/http, zap, prometheus)", name, p)
			}
		}
	}
}

// TestTablesUpToDate reruns the generator in a scratch directory and
// compares its output with the committed tables.go.
func TestTablesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	dir := t.TempDir()
	gen, err := os.ReadFile("gen_tables.go")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gen_tables.go"), gen, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goTool, "run", "gen_tables.go")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run gen_tables.go: %v\n%s", err, out)
	}
	want, err := os.ReadFile(filepath.Join(dir, "tables.go"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("tables.go")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("tables.go is stale: run go generate ./httpparse")
	}
}

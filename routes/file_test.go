package routes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/httpparse"
)

func TestExampleFile(t *testing.T) {
	tab, err := Load("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range tab.Routes() {
		names = append(names, r.Name()+"/"+r.Strategy().String())
	}
	if got := strings.Join(names, " "); got != "datacenter/failover residential/sticky scrape-eu/round-robin" {
		t.Errorf("routes = %s", got)
	}
	if tab.Default() == nil || tab.Default().Name() != "datacenter" {
		t.Errorf("default route = %v", tab.Default())
	}
	r, _ := tab.Lookup([]byte("scrape-eu"))
	u := r.Upstream(0)
	if string(u.User) != "customer-42-country-de" || string(u.Pass) != "s3cr@t" || string(u.Host) != "gw.vendor.example" || u.Port != 7777 {
		t.Errorf("entry 0 = %q %q %q %d", u.User, u.Pass, u.Host, u.Port)
	}
	r, _ = tab.Lookup([]byte("residential"))
	if r.Upstream(2).Scheme != httpparse.SchemeSOCKS5H {
		t.Errorf("residential entry 3 scheme = %v", r.Upstream(2).Scheme)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		want      error
		wantLine  int
		wantRoute string
		wantEntry int
	}{
		{"empty", "", ErrFileSyntax, 0, "", 0},
		{"comment only", "# nothing\n", ErrFileSyntax, 0, "", 0},
		{"not yaml", "routes: [\n", ErrFileSyntax, 0, "", 0},
		{"two documents", "routes:\n  a:\n    upstreams: [h:1]\n---\nroutes: {}\n", ErrFileSyntax, 4, "", 0},
		{"alias", "x: &a [h:1]\nroutes:\n  r:\n    upstreams: *a\n", ErrFileSyntax, 4, "", 0},
		{"top is a list", "- a\n", ErrFileShape, 1, "", 0},
		{"unknown top key", "routes:\n  a:\n    upstreams: [h:1]\nroute: x\n", ErrFileShape, 4, "", 0},
		{"no routes key", "default_route: a\n", ErrNoRoutes, 1, "", 0},
		{"routes null", "routes:\n", ErrNoRoutes, 1, "", 0},
		{"routes empty", "routes: {}\n", ErrNoRoutes, 1, "", 0},
		{"routes is a list", "routes: [a]\n", ErrFileShape, 1, "", 0},
		{"bad name", "routes:\n  'a b':\n    upstreams: [h:1]\n", ErrRouteName, 2, "", 0},
		{"name with marker", "routes:\n  eu-session-x:\n    upstreams: [h:1]\n", ErrRouteName, 2, "", 0},
		{"long name", "routes:\n  " + strings.Repeat("n", 65) + ":\n    upstreams: [h:1]\n", ErrRouteName, 2, "", 0},
		{"duplicate name", "routes:\n  a:\n    upstreams: [h:1]\n  a:\n    upstreams: [h:2]\n", ErrRouteName, 4, "a", 0},
		{"route not a mapping", "routes:\n  a: [h:1]\n", ErrFileShape, 2, "a", 0},
		{"unknown route key", "routes:\n  a:\n    upstream: [h:1]\n", ErrFileShape, 3, "a", 0},
		{"bad strategy", "routes:\n  a:\n    strategy: least-conn\n    upstreams: [h:1]\n", ErrStrategy, 3, "a", 0},
		{"strategy case", "routes:\n  a:\n    strategy: Sticky\n    upstreams: [h:1]\n", ErrStrategy, 3, "a", 0},
		{"no upstreams", "routes:\n  a:\n    strategy: random\n", ErrNoUpstreams, 3, "a", 0},
		{"empty upstreams", "routes:\n  a:\n    upstreams: []\n", ErrNoUpstreams, 3, "a", 0},
		{"upstreams a string", "routes:\n  a:\n    upstreams: h:1\n", ErrFileShape, 3, "a", 0},
		{"entry a mapping", "routes:\n  a:\n    upstreams:\n      - h:1\n      - {x: 1}\n", ErrFileShape, 5, "a", 2},
		{"bad port", "routes:\n  a:\n    upstreams:\n      - h:1\n      - http://u:hunter2@h:99999\n", httpparse.ErrProxyToPort, 5, "a", 2},
		{"bad scheme", "routes:\n  a:\n    upstreams: [\"ftp://u:hunter2@h:1\"]\n", httpparse.ErrProxyToScheme, 3, "a", 1},
		{"path", "routes:\n  b:\n    upstreams: [\"http://u:hunter2@h:1/x\"]\n", httpparse.ErrProxyToPath, 3, "b", 1},
		{"comma list", "routes:\n  a:\n    upstreams: [\"u:hunter2@h:1, h:2\"]\n", ErrEntry, 3, "a", 1},
		{"empty entry", "routes:\n  a:\n    upstreams: [\"\"]\n", httpparse.ErrProxyToEmpty, 3, "a", 1},
		{"default unknown", "routes:\n  a:\n    upstreams: [h:1]\ndefault_route: b\n", ErrDefaultRoute, 4, "", 0},
		{"default a list", "routes:\n  a:\n    upstreams: [h:1]\ndefault_route: [a]\n", ErrFileShape, 4, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err %T is not a *FileError", err)
			}
			if tt.wantLine != 0 && fe.Line != tt.wantLine || fe.Route != tt.wantRoute || fe.Entry != tt.wantEntry {
				t.Errorf("at line %d route %q entry %d, want line %d route %q entry %d (%v)",
					fe.Line, fe.Route, fe.Entry, tt.wantLine, tt.wantRoute, tt.wantEntry, err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error echoes a password: %v", err)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	tab, err := Parse([]byte("routes:\n  a:\n    upstreams: [\"socks5://[::1]\", \"H.Example\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := tab.Routes()[0]
	if r.Strategy() != Failover {
		t.Errorf("default strategy = %v", r.Strategy())
	}
	if tab.Default() != nil {
		t.Error("a default route without default_route")
	}
	if u := r.Upstream(0); !u.IPv6 || u.Port != 1080 || string(u.Host) != "::1" {
		t.Errorf("entry 1 = %+v", u)
	}
	if u := r.Upstream(1); u.Port != 80 || u.HasAuth {
		t.Errorf("entry 2 = %+v", u)
	}
}

func TestLoadErrorNamesPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(p, []byte("routes:\n  a:\n    upstreams: [\"u:hunter2@h:0\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `route "a" entry 1`) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrFileSyntax) {
		t.Fatalf("oversized file: %v", err)
	}
}

func TestSyntaxErrorQuotesNothing(t *testing.T) {
	_, err := Parse([]byte("routes:\n  a:\n    upstreams: *hunter2\n"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("example.yaml"); err == nil {
		f.Add(string(b))
	}
	f.Add("routes:\n  a:\n    strategy: sticky\n    upstreams: [h:1, \"u:p@h:2\"]\ndefault_route: a\n")
	f.Add("routes:\n  a:\n    upstreams:\n      - socks5h://[::1]:1080\n")
	f.Add("routes: {a: {upstreams: [x]}, b: {strategy: random, upstreams: [y, z]}}")
	f.Add("x: &a [h:1]\nroutes:\n  r:\n    upstreams: *a\n")
	f.Add("routes:\n  a:\n    upstreams: [\"http://u:hunter2@h:99999\"]\n")
	f.Fuzz(func(t *testing.T, doc string) {
		tab, err := Parse([]byte(doc))
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err %T is not a *FileError: %v", err, err)
			}
			// Only route names, which are not secret, are echoed.
			msg := strings.Replace(err.Error(), fe.Route, "", 1)
			if strings.Contains(doc, "hunter2") && strings.Contains(msg, "hunter2") {
				t.Fatalf("error echoes the document: %v", err)
			}
			return
		}
		if len(tab.Routes()) == 0 {
			t.Fatal("a table without routes")
		}
		var dst [8]int
		for _, r := range tab.Routes() {
			if !ValidName(r.Name()) || r.Len() == 0 {
				t.Fatalf("route %q with %d entries", r.Name(), r.Len())
			}
			if got, _ := tab.Lookup([]byte(r.Name())); got != r {
				t.Fatalf("Lookup(%q) = %v", r.Name(), got)
			}
			order := r.Pick(dst[:], []byte("k"), 0)
			if len(order) != min(r.Len(), len(dst)) {
				t.Fatalf("Pick returned %d of %d entries", len(order), r.Len())
			}
		}
	})
}

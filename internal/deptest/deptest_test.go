// Package deptest holds the test that enforces proxyto's package boundaries:
// the packages that run on event loops or parse bytes never reach logging,
// metrics or net/http, which only observability and cmd may import.
package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/proxyto/proxyto"

// ban is one forbidden dependency: an import path, or a prefix when it ends
// in "/", and why it is forbidden.
type ban struct {
	path   string
	reason string
}

func (b ban) matches(pkg string) bool {
	if strings.HasSuffix(b.path, "/") {
		return strings.HasPrefix(pkg, b.path) || pkg == strings.TrimSuffix(b.path, "/")
	}
	return pkg == b.path
}

// Bans shared by every package below.
var (
	noZap = ban{"go.uber.org/zap/",
		"logging belongs to observability: the engine reports through engine.Observer, and zap fields built on event loops would cost every request"}
	noPrometheus = ban{"github.com/prometheus/",
		"metrics belong to observability: counters are resolved before the hot path behind engine.Observer"}
	noNetHTTP = ban{"net/http/",
		"proxyto parses and writes HTTP itself on gnet event loops; net/http brings its own goroutines, buffers and header canonicalisation"}
	noObservability = ban{module + "/observability",
		"observability depends on engine, never the reverse: an import cycle in waiting, and event-loop code must not reach the logger"}
	noCmd  = ban{module + "/cmd/", "cmd is the top of the tree: nothing imports it"}
	noGnet = ban{"github.com/panjf2000/gnet/",
		"a pure package over bytes: the engine owns connections and buffers, so it stays testable and fuzzable without I/O"}
	noEngine = ban{module + "/engine",
		"the engine calls this package on its loops (route selection, health, name cache); importing the engine back would be a cycle"}
	noCompression = ban{module + "/compression",
		"tunnel moves bytes; what rewrites them is its owner's business, handed in as a tunnel.Transform"}
	noUpstream = ban{module + "/upstream",
		"upstream's dialer is a user of this package (health reports, cached names), not a dependency of it"}
	noTestServers = ban{module + "/itest/",
		"the test servers (itest/harness) exist for tests and the soak; the shipped binary must not carry them, nor the testing package they import"}
	noHarnessEngine = ban{module + "/engine",
		"the engine's in-process tests import the harness; the harness importing the engine back would be a cycle"}
	noScripts = ban{module + "/scripts/",
		"scripts/ holds programs that test or measure proxyto (the soak); nothing shipped imports them"}
)

// rules lists, per package, what it must not depend on, directly or
// through other packages. Packages that do not exist yet are skipped.
var rules = map[string][]ban{
	"engine":         {noZap, noPrometheus, noNetHTTP, noObservability, noCmd},
	"tunnel":         {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noCompression},
	"upstream":       {noZap, noPrometheus, noNetHTTP, noObservability, noCmd},
	"httpparse":      {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet},
	"proxystatus":    {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet},
	"internal/gnetx": {noZap, noPrometheus, noNetHTTP, noObservability, noCmd},
	"routes":         {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet, noEngine, noUpstream},
	"health":         {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet, noEngine, noUpstream},
	"dnscache":       {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet, noEngine, noUpstream},
	"auth":           {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet, noEngine},
	// The TLS bridge runs two goroutines per https upstream or TLS client:
	// the event loops own connections, the bridge only moves bytes.
	"internal/bridge": {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet},
	// The TLS listener hands plaintext streams to the engine and reports
	// through tlsfront.Observer; it never enrolls them itself.
	"tlsfront": {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet},
	// Compression runs on event loops, over bytes the engine owns.
	"compression": {noZap, noPrometheus, noNetHTTP, noObservability, noCmd, noGnet},
	"cmd/proxyto": {noTestServers, noScripts},
	// The engine's in-process tests start the harness's servers.
	"itest/harness": {noHarnessEngine},
}

// gnetInternals are gnet's packages below its API; only internal/gnetx,
// where every assumption about gnet's internals is written down and
// checked, may import them directly.
const gnetInternals = "github.com/panjf2000/gnet/v2/pkg/"

// TestGnetBoundary: no package of the module but internal/gnetx imports
// gnet's internal packages, or reaches into gnet with reflect or unsafe
// beside importing it.
func TestGnetBoundary(t *testing.T) {
	all := list(t, module+"/...")
	for path, p := range all {
		if !strings.HasPrefix(path, module) || path == module+"/internal/gnetx" {
			continue
		}
		gnet, reflectOrUnsafe := false, false
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, gnetInternals) {
				t.Errorf("%s imports %s: gnet internals are reached only through internal/gnetx", path, imp)
			}
			gnet = gnet || imp == "github.com/panjf2000/gnet/v2"
			reflectOrUnsafe = reflectOrUnsafe || imp == "reflect" || imp == "unsafe"
		}
		if gnet && reflectOrUnsafe {
			t.Errorf("%s imports gnet and reflect/unsafe: reaching into gnet belongs in internal/gnetx", path)
		}
	}
}

// carriers are third-party packages allowed to bring a banned package in,
// with the reason; the walk does not descend into them.
var carriers = map[string]string{
	"github.com/panjf2000/gnet/v2/pkg/logging": "gnet's built-in logger imports zap (and zap imports net/http); proxyto never calls it",
}

// pkg is the part of `go list -json` output the test reads.
type pkg struct {
	ImportPath string
	Imports    []string
	Error      *struct{ Err string }
}

// list runs go list -deps -json on the given import paths (non-test deps
// only) and returns every package by import path.
func list(t *testing.T, paths ...string) map[string]*pkg {
	t.Helper()
	args := append([]string{"list", "-e", "-deps", "-json=ImportPath,Imports,Error"}, paths...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	all := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		all[p.ImportPath] = &p
	}
	return all
}

// missing reports whether go list says the package does not exist (yet).
func missing(p *pkg) bool {
	if p == nil {
		return true
	}
	if p.Error == nil {
		return false
	}
	e := p.Error.Err
	return strings.Contains(e, "no Go files") || strings.Contains(e, "cannot find") ||
		strings.Contains(e, "is not in std") || strings.Contains(e, "no required module") ||
		strings.Contains(e, "matched no packages") || strings.Contains(e, "directory not found")
}

func TestDeps(t *testing.T) {
	var paths []string
	for name := range rules {
		paths = append(paths, module+"/"+name)
	}
	all := list(t, paths...)

	for name, bans := range rules {
		root := module + "/" + name
		t.Run(name, func(t *testing.T) {
			p := all[root]
			if missing(p) {
				t.Skipf("%s does not exist yet", root)
			}
			if p.Error != nil {
				t.Fatalf("%s: %s", root, p.Error.Err)
			}
			// Breadth-first walk remembering how each package was reached,
			// so a failure names the import chain.
			from := map[string]string{root: ""}
			queue := []string{root}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				for _, b := range bans {
					if b.matches(cur) {
						t.Errorf("%s depends on %s (%s)\n\tbanned because %s", root, cur, chain(from, cur), b.reason)
					}
				}
				if _, ok := carriers[cur]; ok {
					continue
				}
				q := all[cur]
				if q == nil {
					continue
				}
				for _, imp := range q.Imports {
					if _, seen := from[imp]; !seen {
						from[imp] = cur
						queue = append(queue, imp)
					}
				}
			}
		})
	}
}

// chain renders the import path from the root to pkg.
func chain(from map[string]string, pkg string) string {
	var c []string
	for p := pkg; p != ""; p = from[p] {
		c = append(c, p)
	}
	for i, j := 0, len(c)-1; i < j; i, j = i+1, j-1 {
		c[i], c[j] = c[j], c[i]
	}
	return strings.Join(c, " → ")
}

// TestBanMatching pins the prefix rules, so a typo in a ban cannot make
// TestDeps pass vacuously.
func TestBanMatching(t *testing.T) {
	for _, c := range []struct {
		b    ban
		pkg  string
		want bool
	}{
		{noNetHTTP, "net/http", true},
		{noNetHTTP, "net/http/httptrace", true},
		{noNetHTTP, "net/httpx", false},
		{noNetHTTP, "net", false},
		{noZap, "go.uber.org/zap", true},
		{noZap, "go.uber.org/zap/zapcore", true},
		{noZap, "go.uber.org/zapx", false},
		{noPrometheus, "github.com/prometheus/client_golang/prometheus", true},
		{noObservability, module + "/observability", true},
		{noObservability, module + "/observabilityx", false},
		{noGnet, "github.com/panjf2000/gnet/v2", true},
		{noTestServers, module + "/itest/harness", true},
		{noScripts, module + "/scripts/soak", true},
		{noScripts, module + "/scriptsx", false},
	} {
		if got := c.b.matches(c.pkg); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.b.path, c.pkg, got, c.want)
		}
	}
	for _, bans := range rules {
		for _, b := range bans {
			if b.reason == "" {
				t.Errorf("ban %q has no reason", b.path)
			}
		}
	}
	for c, reason := range carriers {
		if reason == "" {
			t.Errorf("carrier %q has no reason", c)
		}
	}
}

// TestWalkFindsBans checks the walk itself against a package that is allowed
// every banned import: observability must be seen to reach zap, prometheus
// and net/http, or the walk is broken.
func TestWalkFindsBans(t *testing.T) {
	root := module + "/observability"
	all := list(t, root)
	if missing(all[root]) {
		t.Skip("observability does not exist")
	}
	for _, want := range []string{"go.uber.org/zap", "github.com/prometheus/client_golang/prometheus", "net/http"} {
		if all[want] == nil {
			t.Errorf("observability's deps lack %s: go list output is not what the test expects", want)
		}
	}
}

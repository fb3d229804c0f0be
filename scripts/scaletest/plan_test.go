package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// thisMachine is the machine the issue names: 2 CPUs, 20,000 descriptors
// per process (a hard limit), the default ephemeral range, 23 GiB.
var thisMachine = machine{NoFile: 20000, PortLo: 32768, PortHi: 60999, FileMax: 2466235, ConntrackMax: 262144, MemAvailable: 23 << 30, CPUs: 2, Root: true}

var allPhases = []string{phaseHold, phaseInflight, phaseLimit}

func TestMakePlan(t *testing.T) {
	big := thisMachine
	big.NoFile = 1 << 20
	narrow := thisMachine
	narrow.PortLo, narrow.PortHi = 60000, 60999
	small := thisMachine
	small.MemAvailable = 1 << 30
	for _, tc := range []struct {
		name                       string
		m                          machine
		n, procs                   int
		proxyto, up, origin, loads int
		srcPerLoadgen, upPerProc   int
		problem                    string // substring of the one problem expected; "" for none
	}{
		{name: "CI size", m: thisMachine, n: 2000, proxyto: 1, up: 1, origin: 1, loads: 1, srcPerLoadgen: 1, upPerProc: 1},
		{name: "5k", m: thisMachine, n: 5000, proxyto: 1, up: 1, origin: 1, loads: 1, srcPerLoadgen: 1, upPerProc: 1},
		{name: "one process just fits", m: thisMachine, n: 9400, proxyto: 1, up: 1, origin: 1, loads: 1, srcPerLoadgen: 1, upPerProc: 1},
		{name: "100k on 20k descriptors", m: thisMachine, n: 100000, proxyto: 11, up: 11, origin: 6, loads: 6, srcPerLoadgen: 2, upPerProc: 1},
		{name: "100k on a million descriptors", m: big, n: 100000, proxyto: 1, up: 1, origin: 1, loads: 1, srcPerLoadgen: 8, upPerProc: 8},
		{name: "procs forced too few", m: thisMachine, n: 100000, procs: 2, proxyto: 2, up: 11, origin: 6, loads: 6, srcPerLoadgen: 2, upPerProc: 1, problem: "raise RLIMIT_NOFILE to 101522"},
		{name: "narrow port range", m: narrow, n: 150000, proxyto: 16, up: 16, origin: 8, loads: 8, problem: "widen net.ipv4.ip_local_port_range"},
		{name: "not enough memory", m: small, n: 100000, proxyto: 11, up: 11, origin: 6, loads: 6, srcPerLoadgen: 2, upPerProc: 1, problem: "of memory at its peak"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := makePlan(options{N: tc.n, Rate: 2000, ProxytoProcs: tc.procs, Phases: allPhases}, tc.m)
			got := [4]int{p.Proxyto, p.Upstream, p.Origin, p.Loadgen}
			if want := [4]int{tc.proxyto, tc.up, tc.origin, tc.loads}; got != want {
				t.Errorf("processes proxyto/upstream/origin/loadgen = %v, want %v", got, want)
			}
			if tc.problem == "" {
				if len(p.Problems) > 0 {
					t.Fatalf("unexpected problems: %q", p.Problems)
				}
			} else {
				if len(p.Problems) == 0 || !strings.Contains(strings.Join(p.Problems, "\n"), tc.problem) {
					t.Fatalf("problems %q, want one containing %q", p.Problems, tc.problem)
				}
				return
			}
			if len(p.Phases) != len(allPhases) {
				t.Fatalf("%d phases, want %d", len(p.Phases), len(allPhases))
			}
			ph := p.Phases[0]
			if len(ph.Src[0]) != tc.srcPerLoadgen || len(ph.Up[0]) != tc.upPerProc {
				t.Errorf("source addresses per load generator %d, upstream addresses per process %d; want %d, %d", len(ph.Src[0]), len(ph.Up[0]), tc.srcPerLoadgen, tc.upPerProc)
			}
			checkLoads(t, p)
		})
	}
}

// checkLoads assigns every connection the way the coordinator and the load
// generators do, and checks that no process exceeds its descriptors, no
// address pair its share of the port range, and no two phases or roles
// share an address.
func checkLoads(t *testing.T, p plan) {
	t.Helper()
	if w := worstShare(p.N, p.Proxyto); w > p.ProxytoCap {
		t.Errorf("proxyto: up to %d connections per process, room for %d", w, p.ProxytoCap)
	}
	seen := map[string]string{}
	r := &runner{plan: p, cfg: config{options: options{Rate: 2000}}}
	for _, ph := range p.Phases {
		var upFlat, originFlat []string
		for _, ips := range ph.Up {
			upFlat = append(upFlat, ips...)
		}
		for _, ips := range ph.Origin {
			originFlat = append(originFlat, ips...)
		}
		for _, ip := range append(append(append([]string(nil), upFlat...), originFlat...), flat(ph.Src)...) {
			if prev, dup := seen[ip]; dup {
				t.Fatalf("address %s used twice (%s and %s)", ip, prev, ph.Name)
			}
			seen[ip] = ph.Name
		}
		r.upAddrs = map[string][]string{ph.Name: upFlat}
		r.originAddrs = map[string][]string{ph.Name: originFlat}
		perAddr := map[string]int{}
		perSrc := map[string]int{}
		total := 0
		for i := range p.Loadgen {
			req := r.loadgenRequest("open", ph, i)
			if req.Count > p.OneFDCap {
				t.Errorf("%s: load generator %d opens %d, room for %d", ph.Name, i, req.Count, p.OneFDCap)
			}
			lg := loadgen{req: req}
			for k := range req.Count {
				id, src, up, origin := lg.target(k)
				if id < 0 || id >= p.N {
					t.Fatalf("%s: connection number %d out of range", ph.Name, id)
				}
				perSrc[src]++
				perAddr[up]++
				perAddr[origin]++
				total++
			}
		}
		if total != p.N {
			t.Errorf("%s: %d connections opened, want %d", ph.Name, total, p.N)
		}
		for addr, n := range mergeMaps(perAddr, perSrc) {
			if n > p.PairCap {
				t.Errorf("%s: %d connections on %s, at most %d per address pair", ph.Name, n, addr, p.PairCap)
			}
		}
		sum := func(ips []string) int {
			n := 0
			for _, ip := range ips {
				n += perAddr[ip]
			}
			return n
		}
		for i, ips := range ph.Up {
			if n := sum(ips); n > p.UpstreamCap {
				t.Errorf("%s: upstream %d carries %d, room for %d", ph.Name, i, n, p.UpstreamCap)
			}
		}
		for i, ips := range ph.Origin {
			if n := sum(ips); n > p.OneFDCap {
				t.Errorf("%s: origin %d holds %d, room for %d", ph.Name, i, n, p.OneFDCap)
			}
		}
	}
}

func flat(x [][]string) []string {
	var out []string
	for _, s := range x {
		out = append(out, s...)
	}
	return out
}

func mergeMaps(a, b map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range a {
		out[k] += v
	}
	for k, v := range b {
		out[k] += v
	}
	return out
}

func TestSysctlWants(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(string) string
		cur  string
		want string
	}{
		{"below", atLeast(65535), "4096", "65535"},
		{"equal", atLeast(65535), "65535", ""},
		{"above", atLeast(4096), "65535", ""},
		{"unparsable", atLeast(10), "x", "10"},
		{"triple below", tripleAtLeast([3]int64{300, 600, 1200}), "287\t383\t575", "300 600 1200"},
		{"triple partly", tripleAtLeast([3]int64{300, 600, 1200}), "400 500 2000", "400 600 2000"},
		{"triple enough", tripleAtLeast([3]int64{300, 600, 1200}), "400 700 2000", ""},
	} {
		if got := tc.f(tc.cur); got != tc.want {
			t.Errorf("%s: %q -> %q, want %q", tc.name, tc.cur, got, tc.want)
		}
	}
	if needs := sysctlNeeds(makePlan(options{N: 2000, Rate: 2000, Phases: allPhases}, thisMachine), 3); len(needs) != 0 {
		t.Errorf("N=2000 wants %d kernel settings changed; the defaults must do", len(needs))
	}
	needs := sysctlNeeds(makePlan(options{N: 100000, Rate: 2000, Phases: allPhases}, thisMachine), 3)
	names := map[string]bool{}
	for _, nd := range needs {
		names[nd.name] = true
	}
	for _, want := range []string{"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "fs.file-max", "net.netfilter.nf_conntrack_max", "net.ipv4.tcp_mem"} {
		if !names[want] {
			t.Errorf("N=100000: %s not among the settings wanted", want)
		}
	}
}

func TestMetric(t *testing.T) {
	text := `# HELP proxyto_client_connections Client connections open now.
# TYPE proxyto_client_connections gauge
proxyto_client_connections 17
proxyto_client_connections_total 1234
proxyto_limit_rejections_total{reason="conns"} 5
proxyto_limit_rejections_total{reason="conns_per_ip"} 7
`
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"proxyto_client_connections", nil, 17},
		{"proxyto_client_connections_total", nil, 1234},
		{"proxyto_limit_rejections_total", nil, 12},
		{"proxyto_limit_rejections_total", []string{`reason="conns"`}, 5},
		{"proxyto_tunnels_active", nil, 0},
	} {
		if got := metric(text, tc.name, tc.labels...); got != tc.want {
			t.Errorf("metric(%s, %v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

// TestSysctlsRaiseAndRestore runs raise and restore on a fake /proc/sys:
// only settings below their want are written, settings the kernel does not
// have are skipped, and restore puts every old value back.
func TestSysctlsRaiseAndRestore(t *testing.T) {
	dir := t.TempDir()
	old := procSys
	procSys = dir + "/"
	t.Cleanup(func() { procSys = old })
	files := map[string]string{
		"net/core/somaxconn": "4096\n",
		"net/ipv4/tcp_mem":   "287907\t383876\t575814\n",
		"net/core/rmem_max":  "4194304\n",
		"net/ipv4/unrelated": "1\n",
	}
	for name, v := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	needs := []sysctlNeed{
		{"net.core.somaxconn", atLeast(65535), ""},
		{"net.ipv4.tcp_mem", tripleAtLeast([3]int64{300000, 600000, 1200000}), ""},
		{"net.core.rmem_max", atLeast(1024), ""},                 // already enough
		{"net.netfilter.nf_conntrack_max", atLeast(1 << 20), ""}, // not on this "kernel"
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	var s sysctls
	var out strings.Builder
	if unmet := s.raise(needs, false, &out); len(unmet) != 2 || read("net/core/somaxconn") != "4096" {
		t.Fatalf("not root: unmet %q, somaxconn %s; want 2 reported and nothing written", unmet, read("net/core/somaxconn"))
	}
	if unmet := s.raise(needs, true, &out); len(unmet) != 0 {
		t.Fatalf("root: unmet %q", unmet)
	}
	if got := read("net/core/somaxconn"); got != "65535" {
		t.Errorf("somaxconn %s after raise, want 65535", got)
	}
	if got := read("net/ipv4/tcp_mem"); got != "300000 600000 1200000" {
		t.Errorf("tcp_mem %q after raise", got)
	}
	if err := s.restore(&out); err != nil {
		t.Fatal(err)
	}
	for name, v := range files {
		if got := read(name); got != strings.TrimSpace(v) {
			t.Errorf("%s = %q after restore, want %q", name, got, strings.TrimSpace(v))
		}
	}
}

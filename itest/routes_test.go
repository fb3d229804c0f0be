package itest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/itest/harness"
)

// Routes (docs/routes.md) through the real binary: selection by
// "X-Proxy-To: @name" and by proxy username, the strategies, passive
// health, SIGHUP reloads and accounting. Upstreams tell themselves apart
// by the X-Exit-IP header of their CONNECT answer, which proxyto passes
// back to the client.

// exitUpstream starts an upstream whose CONNECT answers carry
// "X-Exit-IP: name"; opt, if given, configures the rest.
func exitUpstream(t *testing.T, name string, opt ...harness.WireUpstreamOptions) *harness.WireUpstream {
	t.Helper()
	var o harness.WireUpstreamOptions
	if len(opt) > 0 {
		o = opt[0]
	}
	o.ConnectHeaders = []string{"X-Exit-IP: " + name}
	return harness.StartWireUpstream(t, o)
}

// writeRoutes writes a routes file (YAML) and returns its path.
func writeRoutes(t *testing.T, path, yaml string) string {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "routes.yaml")
	}
	// Write and rename, as an editor or a ConfigMap update does: a reload
	// never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// via connects through proxyto to the echo origin with the given extra
// header lines, checks the tunnel with a round trip, and returns the
// answering upstream's X-Exit-IP.
func via(t *testing.T, p *harness.Proxyto, echo *harness.RawOrigin, lines ...string) string {
	t.Helper()
	c, resp := harness.Tunnel(t, p.Addr, echo.Addr, "", lines...)
	defer c.Close()
	c.EchoRoundTrip("ping")
	return resp.Header.Get("X-Exit-IP")
}

// connectStatus sends a CONNECT with the given lines and returns the
// answer (closed by the test's cleanup).
func connectStatus(t *testing.T, p *harness.Proxyto, target string, lines ...string) *http.Response {
	t.Helper()
	return connectErr(t, p, harness.ConnectHead(target, "", lines...))
}

// proxyAuth is a Proxy-Authorization header line.
func proxyAuth(user, pass string) string {
	return "Proxy-Authorization: " + harness.BasicAuth(user, pass)
}

// upstreamsYAML renders a list of upstream addresses as YAML flow items.
func upstreamsYAML(addrs ...string) string {
	q := make([]string, len(addrs))
	for i, a := range addrs {
		q[i] = `"http://` + a + `"`
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func TestRoutesStrategies(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	a, b, c := exitUpstream(t, "a"), exitUpstream(t, "b"), exitUpstream(t, "c")
	ups := upstreamsYAML(a.Addr, b.Addr, c.Addr)
	path := writeRoutes(t, "", fmt.Sprintf(`routes:
  rr: {strategy: round-robin, upstreams: %s}
  rnd: {strategy: random, upstreams: %s}
  fo: {strategy: failover, upstreams: %s}
  st: {strategy: sticky, upstreams: %s}
`, ups, ups, ups, ups))
	p := harness.StartProxyto(t, "--routes", path)

	count := func(n int, lines func(i int) []string) map[string]int {
		got := map[string]int{}
		for i := range n {
			got[via(t, p, echo, lines(i)...)]++
		}
		return got
	}
	route := func(name string) func(int) []string {
		return func(int) []string { return []string{"X-Proxy-To: @" + name} }
	}

	t.Run("round-robin", func(t *testing.T) {
		if got := count(30, route("rr")); got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
			t.Errorf("30 tunnels went %v, want 10 to each", got)
		}
	})
	t.Run("random", func(t *testing.T) {
		// Each upstream misses all 60 with probability (2/3)^60 < 1e-10.
		if got := count(60, route("rnd")); got["a"] == 0 || got["b"] == 0 || got["c"] == 0 || len(got) != 3 {
			t.Errorf("60 tunnels went %v, want some to each", got)
		}
	})
	t.Run("failover", func(t *testing.T) {
		if got := count(10, route("fo")); got["a"] != 10 {
			t.Errorf("10 tunnels went %v, want all to the first", got)
		}
	})
	t.Run("sticky", func(t *testing.T) {
		first := map[string]string{}
		spread := map[string]int{}
		for i := range 60 {
			key := fmt.Sprintf("key-%d", i)
			got := via(t, p, echo, "X-Proxy-To: @st", "X-Proxy-Session: "+key)
			first[key] = got
			spread[got]++
		}
		for i := range 60 {
			key := fmt.Sprintf("key-%d", i)
			if got := via(t, p, echo, "X-Proxy-To: @st", "X-Proxy-Session: "+key); got != first[key] {
				t.Errorf("session %s went to %s, then to %s", key, first[key], got)
			}
		}
		if len(spread) != 3 {
			t.Errorf("60 session keys went %v, want some to each upstream", spread)
		}
		// Without a key: round-robin.
		if got := count(30, route("st")); got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
			t.Errorf("30 tunnels without a session key went %v, want 10 to each", got)
		}
	})
	// X-Proxy-Session is proxyto's: it never reaches an upstream.
	for _, u := range []*harness.WireUpstream{a, b, c} {
		for _, uh := range u.Heads() {
			h := uh.Head.Raw
			if strings.Contains(strings.ToLower(string(h)), "x-proxy-session") || strings.Contains(string(h), "@st") {
				t.Fatalf("an upstream received proxyto's own headers:\n%s", h)
			}
		}
	}
}

// stickyMap sends one tunnel per session key through @st and returns where
// each went.
func stickyMap(t *testing.T, p *harness.Proxyto, echo *harness.RawOrigin, keys int) map[string]string {
	t.Helper()
	m := map[string]string{}
	for i := range keys {
		key := fmt.Sprintf("s%d", i)
		m[key] = via(t, p, echo, "X-Proxy-To: @st", "X-Proxy-Session: "+key)
	}
	return m
}

// TestRoutesStickyAcrossRestart: the same keys go to the same upstreams
// after proxyto restarts (and so on every replica): the hash is fixed, not
// seeded per process.
func TestRoutesStickyAcrossRestart(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	a, b, c := exitUpstream(t, "a"), exitUpstream(t, "b"), exitUpstream(t, "c")
	path := writeRoutes(t, "", "routes:\n  st: {strategy: sticky, upstreams: "+upstreamsYAML(a.Addr, b.Addr, c.Addr)+"}\n")
	p := harness.StartProxyto(t, "--routes", path)
	before := stickyMap(t, p, echo, 30)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(); code != 0 {
		t.Fatalf("proxyto exited %d", code)
	}
	p2 := harness.StartProxyto(t, "--routes", path)
	after := stickyMap(t, p2, echo, 30)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("session %s went to %s before the restart, to %s after", k, v, after[k])
		}
	}
}

// TestRoutesSelectionErrors: unknown routes and malformed selections are
// 400 http_request_error; nothing reaches an upstream.
func TestRoutesSelectionErrors(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	a := exitUpstream(t, "a")
	path := writeRoutes(t, "", "routes:\n  r1: {upstreams: "+upstreamsYAML(a.Addr)+"}\n")
	p := harness.StartProxyto(t, "--routes", path)
	for _, tc := range []struct {
		name  string
		lines []string
	}{
		{"unknown @route", []string{"X-Proxy-To: @nope"}},
		{"empty @", []string{"X-Proxy-To: @"}},
		{"@route in a list", []string{"X-Proxy-To: @r1, " + a.Addr}},
		{"unknown route in the username", []string{proxyAuth("alice-route-nope", "pw")}},
		{"empty route in the username", []string{proxyAuth("alice-route-", "pw")}},
		{"route named twice in the username", []string{proxyAuth("alice-route-r1-route-r1", "pw")}},
		{"session with a space", []string{"X-Proxy-To: @r1", "X-Proxy-Session: a b"}},
		{"two X-Proxy-Session", []string{"X-Proxy-To: @r1", "X-Proxy-Session: a", "X-Proxy-Session: b"}},
		{"no route, no X-Proxy-To, no default", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProxyError(t, connectStatus(t, p, echo.Addr, tc.lines...), 400, "http_request_error", 0)
		})
	}
	if n := a.Requests(); n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}
}

// TestRoutesDefault: without X-Proxy-To and without a route in the
// username, the file's default_route applies, before --default-upstream;
// an explicit X-Proxy-To list is used as written.
func TestRoutesDefault(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	a, b, d := exitUpstream(t, "a"), exitUpstream(t, "b"), exitUpstream(t, "d")
	path := writeRoutes(t, "", "routes:\n  r1: {upstreams: "+upstreamsYAML(a.Addr)+"}\n  r2: {upstreams: "+upstreamsYAML(b.Addr)+"}\ndefault_route: r2\n")
	p := harness.StartProxyto(t, "--routes", path, "--default-upstream", d.Addr)
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"nothing named: default_route", nil, "b"},
		{"@r1", []string{"X-Proxy-To: @r1"}, "a"},
		{"username route", []string{proxyAuth("u-route-r1", "x")}, "a"},
		{"explicit list wins over the username", []string{"X-Proxy-To: " + d.Addr, proxyAuth("u-route-r1", "x")}, "d"},
		{"@name wins over the username", []string{"X-Proxy-To: @r2", proxyAuth("u-route-r1", "x")}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := via(t, p, echo, tc.lines...); got != tc.want {
				t.Errorf("went to %q, want %q", got, tc.want)
			}
		})
	}
	// Without default_route, --default-upstream.
	path2 := writeRoutes(t, "", "routes:\n  r1: {upstreams: "+upstreamsYAML(a.Addr)+"}\n")
	p2 := harness.StartProxyto(t, "--routes", path2, "--default-upstream", d.Addr)
	if got := via(t, p2, echo); got != "d" {
		t.Errorf("without default_route: went to %q, want the --default-upstream", got)
	}
}

// portSwitch is a TCP forwarder on a fixed loopback port that can be turned
// off (the port refuses connections) and on again, in front of a real
// upstream: an upstream that goes down and comes back.
type portSwitch struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

// newPortSwitch reserves a port for target, off.
func newPortSwitch(t *testing.T, target string) *portSwitch {
	s := &portSwitch{t: t, addr: harness.FreeAddr(t), target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(s.off)
	return s
}

// on starts forwarding.
func (s *portSwitch) on() {
	s.t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("portSwitch listen %s: %v", s.addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", s.target)
			if err != nil {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns[c], s.conns[u] = true, true
			s.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
}

// off closes the listener and every forwarded connection: the port refuses.
func (s *portSwitch) off() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	clear(s.conns)
}

// blackhole returns a loopback address whose listener never accepts and
// whose backlog is full, so that a connect to it hangs (SYNs are dropped),
// or skips the test when the kernel does not behave so.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := listenBacklog0(t)
	if err != nil {
		t.Skipf("blackhole listener: %v", err)
	}
	for range 4 { // fill the accept queue
		if c, err := net.DialTimeout("tcp", ln, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if c, err := net.DialTimeout("tcp", ln, 300*time.Millisecond); err == nil {
		c.Close()
		t.Skip("the kernel completed a connect to a full backlog: no blackhole on this machine")
	}
	return ln
}

// listenBacklog0 opens a loopback listener with a backlog of 0 that nothing
// accepts on, and returns its address.
func listenBacklog0(t *testing.T) (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return "", err
	}
	if err := unix.Listen(fd, 0); err != nil {
		return "", err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port), nil
}

package itest

import (
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// Passive health through the binary: failures before any byte of a
// request reached an upstream eject it; an ejected upstream is skipped,
// probed once after --eject-for, and back in service once a probe
// succeeds; when every upstream is ejected, all are tried in order.

// dialErrors is proxyto_upstream_errors_total{stage="dial"}.
func dialErrors(t *testing.T, p *harness.Proxyto) float64 {
	t.Helper()
	return scrapeMetrics(t, p).value(t, "proxyto_upstream_errors_total", map[string]string{"stage": "dial"})
}

// TestRoutesEjectRefused: an upstream that refuses connections is ejected
// after --eject-after failures (each recovered by failover), skipped while
// ejected, and back in service once it answers again.
func TestRoutesEjectRefused(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	a, b := exitUpstream(t, "a"), exitUpstream(t, "b")
	sw := newPortSwitch(t, a.Addr) // off: refuses
	path := writeRoutes(t, "", "routes:\n  ej: {strategy: failover, upstreams: "+upstreamsYAML(sw.addr, b.Addr)+"}\n")
	const ejectFor = 2 * time.Second
	p := harness.StartProxyto(t, "--routes", path, "--eject-after", "2", "--eject-for", ejectFor.String())

	for i := range 2 {
		if got := via(t, p, echo, "X-Proxy-To: @ej"); got != "b" {
			t.Fatalf("tunnel %d went to %q, want b (failover)", i+1, got)
		}
	}
	ejectedAt := time.Now()
	s := scrapeMetrics(t, p)
	if v := s.value(t, "proxyto_route_ejections_total", map[string]string{"route": "ej"}); v != 1 {
		t.Errorf("proxyto_route_ejections_total{route=ej} = %v, want 1", v)
	}
	if v := s.value(t, "proxyto_route_upstreams_ejected", map[string]string{"route": "ej"}); v != 1 {
		t.Errorf("proxyto_route_upstreams_ejected{route=ej} = %v, want 1", v)
	}
	if v := s.value(t, "proxyto_upstream_ejections_total", nil); v != 1 {
		t.Errorf("proxyto_upstream_ejections_total = %v, want 1", v)
	}

	// Skipped while ejected: no more dials to it.
	before := dialErrors(t, p)
	for range 3 {
		if got := via(t, p, echo, "X-Proxy-To: @ej"); got != "b" {
			t.Fatalf("tunnel went to %q while the first upstream was down", got)
		}
	}
	if n := dialErrors(t, p) - before; n != 0 {
		if time.Since(ejectedAt) < ejectFor {
			t.Errorf("%v dials to the ejected upstream within its cool-down", n)
		} else {
			t.Logf("the machine was too slow to check the skip (%v passed)", time.Since(ejectedAt))
		}
	}

	// Back up: a probe after the cool-down puts it back in service.
	sw.on()
	eventually(t, "the first upstream to serve again after its cool-down", func() bool {
		return via(t, p, echo, "X-Proxy-To: @ej") == "a"
	})
	if got := via(t, p, echo, "X-Proxy-To: @ej"); got != "a" {
		t.Errorf("after recovery the tunnel went to %q, want a", got)
	}
	if v := scrapeMetrics(t, p).value(t, "proxyto_route_upstreams_ejected", map[string]string{"route": "ej"}); v != 0 {
		t.Errorf("proxyto_route_upstreams_ejected{route=ej} = %v after recovery, want 0", v)
	}
	noSecretInLogs(t, p)
}

// TestRoutesEjectHangingHandshake: an upstream that accepts and never
// answers the CONNECT fails each request with 504 (its bytes reached the
// upstream: no failover), and is ejected after --eject-after of them.
func TestRoutesEjectHangingHandshake(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	hang, b := exitUpstream(t, "hang", harness.WireUpstreamOptions{Mode: harness.WireHang}), exitUpstream(t, "b")
	path := writeRoutes(t, "", "routes:\n  ej: {strategy: failover, upstreams: "+upstreamsYAML(hang.Addr, b.Addr)+"}\n")
	p := harness.StartProxyto(t, "--routes", path, "--eject-after", "2", "--eject-for", "1m", "--response-header-timeout", "300ms")
	for range 2 {
		wantProxyError(t, connectStatus(t, p, echo.Addr, "X-Proxy-To: @ej"), 504, "http_response_timeout", 0)
	}
	if got := via(t, p, echo, "X-Proxy-To: @ej"); got != "b" {
		t.Errorf("after two timeouts the tunnel went to %q, want b", got)
	}
	if n := len(hang.Heads()); n != 2 {
		t.Errorf("the hanging upstream received %d CONNECTs, want 2", n)
	}
	if v := scrapeMetrics(t, p).value(t, "proxyto_route_ejections_total", map[string]string{"route": "ej"}); v != 1 {
		t.Errorf("proxyto_route_ejections_total{route=ej} = %v, want 1", v)
	}
}

// TestRoutesEjectHangingDial: an upstream whose connect hangs (its backlog
// is full) times out after --dial-timeout, the next entry serves, and it is
// ejected.
func TestRoutesEjectHangingDial(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	hole, b := blackhole(t), exitUpstream(t, "b")
	path := writeRoutes(t, "", "routes:\n  ej: {strategy: failover, upstreams: "+upstreamsYAML(hole, b.Addr)+"}\n")
	p := harness.StartProxyto(t, "--routes", path, "--eject-after", "1", "--eject-for", "1m", "--dial-timeout", "300ms")
	if got := via(t, p, echo, "X-Proxy-To: @ej"); got != "b" {
		t.Fatalf("tunnel went to %q, want b after the first dial timed out", got)
	}
	s := scrapeMetrics(t, p)
	if v := s.value(t, "proxyto_upstream_errors_total", map[string]string{"stage": "dial", "type": "connection_timeout"}); v != 1 {
		t.Errorf("dial timeouts = %v, want 1", v)
	}
	if v := s.value(t, "proxyto_route_upstreams_ejected", map[string]string{"route": "ej"}); v != 1 {
		t.Errorf("proxyto_route_upstreams_ejected{route=ej} = %v, want 1", v)
	}
	if got := via(t, p, echo, "X-Proxy-To: @ej"); got != "b" {
		t.Fatalf("tunnel went to %q, want b", got)
	}
	if v := scrapeMetrics(t, p).value(t, "proxyto_upstream_errors_total", map[string]string{"stage": "dial", "type": "connection_timeout"}); v != 1 {
		t.Errorf("dial timeouts = %v after the ejection, want still 1 (skipped)", v)
	}
}

// TestRoutesAllEjected: when every upstream of a route is ejected, they
// are all tried, in file order: better a slow answer than none.
func TestRoutesAllEjected(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	a, b := exitUpstream(t, "a"), exitUpstream(t, "b")
	swA, swB := newPortSwitch(t, a.Addr), newPortSwitch(t, b.Addr)
	path := writeRoutes(t, "", "routes:\n  all: {strategy: round-robin, upstreams: "+upstreamsYAML(swA.addr, swB.addr)+"}\n")
	p := harness.StartProxyto(t, "--routes", path, "--eject-after", "1", "--eject-for", "1m")

	wantProxyError(t, connectStatus(t, p, echo.Addr, "X-Proxy-To: @all"), 502, "connection_refused", 0)
	if v := scrapeMetrics(t, p).value(t, "proxyto_route_upstreams_ejected", map[string]string{"route": "all"}); v != 2 {
		t.Fatalf("proxyto_route_upstreams_ejected{route=all} = %v, want 2", v)
	}
	before := dialErrors(t, p)
	wantProxyError(t, connectStatus(t, p, echo.Addr, "X-Proxy-To: @all"), 502, "connection_refused", 0)
	if n := dialErrors(t, p) - before; n != 2 {
		t.Errorf("%v dials with every upstream ejected, want 2 (all tried)", n)
	}
	swB.on()
	for range 2 {
		if got := via(t, p, echo, "X-Proxy-To: @all"); got != "b" {
			t.Fatalf("tunnel went to %q, want b", got)
		}
	}
	if v := scrapeMetrics(t, p).value(t, "proxyto_route_upstreams_ejected", map[string]string{"route": "all"}); v != 1 {
		t.Errorf("proxyto_route_upstreams_ejected{route=all} = %v once b answered, want 1", v)
	}
}

// TestEjectXProxyToList: X-Proxy-To lists get passive health too: an
// upstream of a list that keeps refusing is skipped.
func TestEjectXProxyToList(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	b := exitUpstream(t, "b")
	refused := harness.ClosedAddr(t)
	p := harness.StartProxyto(t, "--eject-after", "2", "--eject-for", "1m")
	for range 2 {
		c, _ := harness.Tunnel(t, p.Addr, echo.Addr, refused+", "+b.Addr)
		c.EchoRoundTrip("x")
		c.Close()
	}
	before := dialErrors(t, p)
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, refused+", "+b.Addr)
	c.EchoRoundTrip("x")
	c.Close()
	if n := dialErrors(t, p) - before; n != 0 {
		t.Errorf("%v dials to an ejected list upstream, want 0", n)
	}
	s := scrapeMetrics(t, p)
	if v := s.value(t, "proxyto_upstream_ejections_total", nil); v != 1 {
		t.Errorf("proxyto_upstream_ejections_total = %v, want 1", v)
	}
	if v := s.value(t, "proxyto_upstreams_ejected", nil); v != 1 {
		t.Errorf("proxyto_upstreams_ejected = %v, want 1", v)
	}
}

// TestEjectNot502ToConnect: an upstream that answers CONNECT with 503
// (itself unavailable) is ejected; one that answers 502 because the
// client's target is down is not, however often a client asks.
func TestEjectNot502ToConnect(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := exitUpstream(t, "u", harness.WireUpstreamOptions{Mode: harness.Wire503})
	path := writeRoutes(t, "", "routes:\n  r: {upstreams: "+upstreamsYAML(up.Addr)+"}\n")
	p := harness.StartProxyto(t, "--routes", path, "--eject-after", "1", "--eject-for", "1m")
	// Mode5xx answers 503: counts.
	wantProxyError(t, connectStatus(t, p, echo.Addr, "X-Proxy-To: @r"), 502, "destination_unavailable", 503)
	if v := scrapeMetrics(t, p).value(t, "proxyto_route_upstreams_ejected", map[string]string{"route": "r"}); v != 1 {
		t.Errorf("after a 503 to CONNECT: ejected = %v, want 1", v)
	}
	// A working upstream asked for a dead target answers 502: no count.
	ok := exitUpstream(t, "ok")
	path2 := writeRoutes(t, "", "routes:\n  r: {upstreams: "+upstreamsYAML(ok.Addr)+"}\n")
	p2 := harness.StartProxyto(t, "--routes", path2, "--eject-after", "1", "--eject-for", "1m")
	dead := harness.ClosedAddr(t)
	for range 3 {
		wantProxyError(t, connectStatus(t, p2, dead, "X-Proxy-To: @r"), 502, "destination_unavailable", 502)
	}
	if v := scrapeMetrics(t, p2).value(t, "proxyto_route_upstreams_ejected", map[string]string{"route": "r"}); v != 0 {
		t.Errorf("after 502s to CONNECT: ejected = %v, want 0", v)
	}
	if got := via(t, p2, echo, "X-Proxy-To: @r"); got != "ok" {
		t.Errorf("tunnel went to %q", got)
	}
}

//go:build !race

package engine

import (
	"bytes"
	"encoding/base64"
	"net"
	"testing"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/auth"
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/routes"
	"github.com/proxyto/proxyto/tunnel"
)

// fakeConn is the part of gnet.Conn the forwarding path uses in its steady
// state: bytes to read, and a count of bytes written. Any other method
// panics (the embedded interface is nil), which flags an unexpected call.
type fakeConn struct {
	gnet.Conn
	in      []byte
	off     int
	written int
	ctx     any
	fd      int // an idle socket, for the pool's liveness check
}

func (f *fakeConn) Peek(n int) ([]byte, error) { return f.in[f.off:], nil }
func (f *fakeConn) Discard(n int) (int, error) {
	if rest := len(f.in) - f.off; n < 0 || n > rest {
		n = rest
	}
	f.off += n
	return n, nil
}
func (f *fakeConn) InboundBuffered() int        { return len(f.in) - f.off }
func (f *fakeConn) OutboundBuffered() int       { return 0 }
func (f *fakeConn) Write(p []byte) (int, error) { f.written += len(p); return len(p), nil }
func (f *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	f.written += n
	return n, nil
}
func (f *fakeConn) Fd() int              { return f.fd }
func (f *fakeConn) Context() any         { return f.ctx }
func (f *fakeConn) SetContext(v any)     { f.ctx = v }
func (f *fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (f *fakeConn) feed(b []byte)        { f.in, f.off = b, 0 }
func (f *fakeConn) drained() bool        { return f.off == len(f.in) }

var (
	benchReq = []byte("GET http://origin.test/small?x=1 HTTP/1.1\r\nHost: origin.test\r\n" +
		"X-Proxy-To: user:p%40ss@127.0.0.1:3128\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n" +
		"Accept-Encoding: gzip\r\nProxy-Connection: keep-alive\r\nX-Request-Id: 0123456789\r\n\r\n")
	benchResp = append([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n"+
		"Date: Thu, 26 Nov 2026 12:00:00 GMT\r\nServer: origin\r\n\r\n"), make([]byte, 1024)...)
)

// newForwardBench builds a client connection on a loop state with a pooled
// upstream connection for the request's X-Proxy-To, without starting gnet:
// the steady state of a kept-alive client whose upstream connection is
// reused.
func newForwardBench(tb testing.TB) (*clientConn, *upstreamConn, *fakeConn, *fakeConn) {
	return newForwardBenchCfg(tb, Config{})
}

// newForwardBenchCfg is newForwardBench for an engine configured with cfg.
func newForwardBenchCfg(tb testing.TB, cfg Config) (*clientConn, *upstreamConn, *fakeConn, *fakeConn) {
	var l httpparse.UpstreamList
	if err := l.Parse([]byte("user:p%40ss@127.0.0.1:3128")); err != nil {
		tb.Fatal(err)
	}
	return newForwardBenchWith(tb, cfg, &l.Upstreams()[0])
}

// newForwardBenchWith is newForwardBench for an engine configured with cfg,
// pooling a connection to pooled.
func newForwardBenchWith(tb testing.TB, cfg Config, pooled *httpparse.Upstream) (*clientConn, *upstreamConn, *fakeConn, *fakeConn) {
	cfg.Listen = "127.0.0.1:0"
	e, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ls := &loopState{e: e, relay: tunnel.NewLoopWithoutGnet(e.relay)}
	ls.pool.init(e)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = unix.Close(fds[0]); _ = unix.Close(fds[1]) })
	cli, up := &fakeConn{fd: -1}, &fakeConn{fd: fds[0]}
	cc := &clientConn{e: e, ls: ls, idx: -1}
	cc.end.Attach(ls.relay, cli)
	cli.ctx = cc
	uc := &upstreamConn{ls: ls}
	uc.end.Attach(ls.relay, up)
	up.ctx = uc
	ls.pool.put(uc, pooled)
	return cc, uc, cli, up
}

// roundTrip runs one request and its response through the connection.
func roundTrip(tb testing.TB, cc *clientConn, uc *upstreamConn, cli, up *fakeConn) {
	roundTripReq(tb, cc, uc, cli, up, benchReq)
}

// roundTripReq is roundTrip for the request req.
func roundTripReq(tb testing.TB, cc *clientConn, uc *upstreamConn, cli, up *fakeConn, req []byte) {
	cli.feed(req)
	cc.traffic()
	if cc.http == nil || cc.http.up != uc || !cli.drained() {
		tb.Fatalf("request not forwarded on the pooled connection (client %v)", cc.st)
	}
	up.feed(benchResp)
	uc.traffic()
	if cc.st != cReadingHead || !up.drained() || cc.x != nil || uc.x != nil {
		tb.Fatalf("response not forwarded, or connection not pooled (client %v, exchange %v)", cc.st, cc.http.st)
	}
}

// TestForwardSteadyStateAllocs holds the plain-HTTP path (parse the request
// and X-Proxy-To, take a pooled upstream connection, write the head, parse
// and stream the response, pool the connection again, log) to zero
// allocations per request once warm.
func TestForwardSteadyStateAllocs(t *testing.T) {
	cc, uc, cli, up := newForwardBench(t)
	for i := 0; i < 3; i++ { // warm: lists, header slices, scratch, key strings
		roundTrip(t, cc, uc, cli, up)
	}
	tests := []struct {
		name       string
		wantAllocs float64
	}{
		{"keep-alive request through a pooled upstream", 0},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(200, func() { roundTrip(t, cc, uc, cli, up) }); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs per request, want %v", tt.name, got, tt.wantAllocs)
		}
	}
	if up.written == 0 || cli.written == 0 {
		t.Fatal("nothing was written")
	}
}

// TestPartialHeadLeavesGnetEmpty: a head that arrives in parts is taken out
// of gnet's buffer at each part (left there, it would sit in an inbound ring
// buffer of gnet's, sized by what relays returned to gnet's pool: up to
// 256 KiB per slow client), and the whole head is forwarded when its last
// part comes, without allocating once the held buffers are pooled.
func TestPartialHeadLeavesGnetEmpty(t *testing.T) {
	cc, uc, cli, up := newForwardBench(t)
	roundTrip(t, cc, uc, cli, up)
	inParts := func(size int) {
		last := len(benchReq) - 1 - (len(benchReq)-1)%size
		for off := 0; off < last; off += size {
			cli.feed(benchReq[off : off+size])
			cc.traffic()
			if !cli.drained() || cc.st != cReadingHead || cc.held == nil {
				t.Fatalf("parts of %d, after %d bytes: %d left in gnet's buffer, state %v, held %v",
					size, off+size, cli.InboundBuffered(), cc.st, cc.held != nil)
			}
		}
		roundTripReq(t, cc, uc, cli, up, benchReq[last:])
		if cc.held != nil {
			t.Fatalf("parts of %d: the held head was not released", size)
		}
	}
	for _, size := range []int{1, 2, 7, 100, len(benchReq) - 1} {
		inParts(size)
	}
	if got := testing.AllocsPerRun(50, func() { inParts(16) }); got >= 1 {
		t.Errorf("%v allocs per request in parts, want 0", got)
	}
}

// TestCompressedSteadyStateAllocs holds a gzipped response (Compress on,
// a text body of 1 KiB, a client accepting gzip) to zero allocations per
// request once the encoder pool and output buffers are warm, and checks
// that the uncompressed path stays at zero with Compress on.
func TestCompressedSteadyStateAllocs(t *testing.T) {
	plainReq := bytes.Replace(benchReq, []byte("Accept-Encoding: gzip"), []byte("Accept-Encoding: br"), 1)
	tests := []struct {
		name       string
		req        []byte
		gzipped    bool
		wantAllocs float64
	}{
		{"gzipped response", benchReq, true, 0},
		{"client without gzip", plainReq, false, 0},
	}
	for _, tt := range tests {
		cc, uc, cli, up := newForwardBenchCfg(t, Config{Compress: true})
		for i := 0; i < 3; i++ {
			roundTripReq(t, cc, uc, cli, up, tt.req)
		}
		before := cli.written
		roundTripReq(t, cc, uc, cli, up, tt.req)
		if n := cli.written - before; (n < len(benchResp)) == !tt.gzipped {
			t.Fatalf("%s: %d bytes to the client for a %d-byte response", tt.name, n, len(benchResp))
		}
		if got := testing.AllocsPerRun(200, func() { roundTripReq(t, cc, uc, cli, up, tt.req) }); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs per request, want %v", tt.name, got, tt.wantAllocs)
		}
	}
}

// BenchmarkCompressedSteadyState is BenchmarkForwardSteadyState with the
// 1 KiB text response gzipped on its way.
func BenchmarkCompressedSteadyState(b *testing.B) { benchRoundTrips(b, Config{Compress: true}) }

// BenchmarkForwardSteadyState measures the engine's own work per forwarded
// request (no syscalls: the connections are fakes).
func BenchmarkForwardSteadyState(b *testing.B) { benchRoundTrips(b, Config{}) }

// benchRoundTrips measures round trips on a kept-alive client connection of
// an engine configured with cfg.
func benchRoundTrips(b *testing.B, cfg Config) {
	cc, uc, cli, up := newForwardBenchCfg(b, cfg)
	roundTrip(b, cc, uc, cli, up)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchReq) + len(benchResp)))
	b.ResetTimer()
	for range b.N {
		roundTrip(b, cc, uc, cli, up)
	}
}

// A routes file for the route benchmarks: a sticky route whose session key
// s42 always picks the same first entry, so the pooled connection serves.
const benchRoutes = `routes:
  r1:
    strategy: sticky
    upstreams:
      - user:p%40ss@127.0.0.1:3128
      - user:p%40ss@127.0.0.2:3128
      - http://u:p@127.0.0.3:1080
      - http://127.0.0.4:3128
`

var (
	benchRouteReq = []byte("GET http://origin.test/small?x=1 HTTP/1.1\r\nHost: origin.test\r\n" +
		"X-Proxy-To: @r1\r\nX-Proxy-Session: s42\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n" +
		"Accept-Encoding: gzip\r\nProxy-Connection: keep-alive\r\nX-Request-Id: 0123456789\r\n\r\n")
	benchUserReq = []byte("GET http://origin.test/small?x=1 HTTP/1.1\r\nHost: origin.test\r\n" +
		"Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("alice-route-r1-session-s42:pw")) + "\r\n" +
		"User-Agent: bench/1.0\r\nAccept: */*\r\n" +
		"Accept-Encoding: gzip\r\nProxy-Connection: keep-alive\r\nX-Request-Id: 0123456789\r\n\r\n")
)

// newRouteBench is newForwardBench with the routes of benchRoutes and
// client authentication (alice:pw), pooling a connection to the entry
// session s42 picks first.
func newRouteBench(tb testing.TB) (*clientConn, *upstreamConn, *fakeConn, *fakeConn) {
	h := routes.NewHolder(nil)
	tab, err := routes.Parse([]byte(benchRoutes))
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.Store(tab); err != nil {
		tb.Fatal(err)
	}
	a, err := auth.NewHolder(auth.Options{Users: []string{"alice:pw"}})
	if err != nil {
		tb.Fatal(err)
	}
	r, _ := tab.Lookup([]byte("r1"))
	var dst [8]int
	first := r.Pick(dst[:], []byte("s42"), h.Tracker().Now())[0]
	return newForwardBenchWith(tb, Config{Routes: h, Auth: a}, r.Upstream(first))
}

// TestRouteSteadyStateAllocs holds requests through a route, selected by
// "X-Proxy-To: @r1" or by the username of Proxy-Authorization (checked
// against the credentials), to zero allocations once warm, as plain
// X-Proxy-To requests are.
func TestRouteSteadyStateAllocs(t *testing.T) {
	tests := []struct {
		name       string
		req        []byte
		wantRoute  int
		wantUser   int
		wantAllocs float64
	}{
		{"X-Proxy-To: @r1 with X-Proxy-Session", benchRouteReq, 0, -1, 0},
		{"username alice-route-r1-session-s42", benchUserReq, 0, 0, 0},
	}
	for _, tt := range tests {
		cc, uc, cli, up := newRouteBench(t)
		if tt.wantUser < 0 {
			cc.e.cfg.Auth = nil
		}
		for i := 0; i < 3; i++ {
			roundTripReq(t, cc, uc, cli, up, tt.req)
		}
		if got := cc.ls.rec; got.Route != tt.wantRoute || got.User != tt.wantUser {
			t.Errorf("%s: access record route %d user %d, want %d %d", tt.name, got.Route, got.User, tt.wantRoute, tt.wantUser)
		}
		if got := testing.AllocsPerRun(200, func() { roundTripReq(t, cc, uc, cli, up, tt.req) }); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs per request, want %v", tt.name, got, tt.wantAllocs)
		}
	}
}

// BenchmarkSelect measures choosing a request's upstreams from its parsed
// head (select.go): an X-Proxy-To list, a route by @name and session
// header, a route by username with the credentials checked.
func BenchmarkSelect(b *testing.B) {
	for _, bc := range []struct {
		name string
		req  []byte
		auth bool
	}{
		{"x-proxy-to", benchReq, false},
		{"@route", benchRouteReq, false},
		{"username+auth", benchUserReq, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cc, _, _, _ := newRouteBench(b)
			if !bc.auth {
				cc.e.cfg.Auth = nil
			}
			if _, err := cc.ls.req.Parse(bc.req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				var ups upstreams
				if pe := cc.choose(bc.req, &ups); pe != nil || ups.n == 0 {
					b.Fatal(pe)
				}
				ups.release(cc.ls)
			}
		})
	}
}

package engine_test

// In-process test harness: an engine started in the test process, the
// itest harness's upstream proxy and raw TCP targets, an origin, a recording
// Observer and raw HTTP client helpers. Everything listens on 127.0.0.1 and
// every connection carries a deadline.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyto/proxyto/compression"
	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/itest/harness"
	"github.com/proxyto/proxyto/proxystatus"
)

// ioTimeout bounds every single test connection; waitFor bounds polling.
const (
	ioTimeout = 60 * time.Second
	waitLong  = 20 * time.Second
)

// ---------------------------------------------------------------- engine

type testEngine struct {
	*engine.Engine
	rec      *recorder
	addr     string
	shutDown atomic.Bool
}

// startEngine starts an engine on 127.0.0.1:0 with 2 loops (unless set) and a
// recorder as Observer; Cleanup shuts it down unless the test did. It returns
// once a probe connection was opened on a loop (belt and braces: see
// TestInprocBootConnectAtOnce), with the recorder reset.
func startEngine(t *testing.T, cfg engine.Config) *testEngine {
	t.Helper()
	te := startEngineNoProbe(t, cfg)
	for attempt := 1; ; attempt++ {
		c, err := net.DialTimeout("tcp", te.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("probe dial: %v", err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for te.rec.snapshot().clientsOpened == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		_ = c.Close()
		if te.rec.snapshot().clientsOpened > 0 {
			break
		}
		if attempt == 5 {
			t.Fatal("the engine never opened a probe connection")
		}
	}
	te.rec.settled(t)
	te.rec.with(func(s *obsStats) { *s = obsStats{} })
	return te
}

// startEngineNoProbe is startEngine without the probe: clients may connect
// the moment Start returned.
func startEngineNoProbe(t *testing.T, cfg engine.Config) *testEngine {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	rec := &recorder{}
	cfg.Observer = rec
	var logOK atomic.Bool // t.Logf must not run after the test ended
	logOK.Store(true)
	cfg.Logf = func(f string, a ...any) {
		if logOK.Load() {
			t.Logf("engine: "+f, a...)
		}
	}
	t.Cleanup(func() { logOK.Store(false) })
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	if err := e.Start(); err != nil {
		t.Fatalf("engine.Start: %v", err)
	}
	te := &testEngine{Engine: e, rec: rec, addr: e.Addr()}
	t.Cleanup(func() {
		if te.shutDown.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("cleanup Shutdown: %v", err)
		}
	})
	return te
}

// shutdown calls Shutdown once and marks the engine as shut down.
func (te *testEngine) shutdown(ctx context.Context) error {
	te.shutDown.Store(true)
	return te.Shutdown(ctx)
}

// ---------------------------------------------------------------- client

type client struct {
	t  *testing.T
	c  *net.TCPConn
	br *bufio.Reader
	rx *atomic.Int64 // bytes read from the engine
}

func newBufReader(c net.Conn, rx *atomic.Int64) *bufio.Reader {
	return bufio.NewReader(countReader{c, rx})
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// dialClient connects to addr with a deadline; Cleanup closes it (before the
// engine's Cleanup, which runs later because the engine was started first).
func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { _ = c.Close() })
	rx := new(atomic.Int64)
	return &client{t: t, c: c.(*net.TCPConn), br: bufio.NewReader(countReader{c, rx}), rx: rx}
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

// response is a fully read response.
type response struct {
	*http.Response
	body []byte
}

// read reads one response (method matters for HEAD framing).
func (c *client) read(method string) (*response, error) {
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return nil, err
	}
	if method == http.MethodConnect && resp.StatusCode/100 == 2 {
		// The tunnel starts right after the head: the rest is not a body.
		return &response{Response: resp}, nil
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return &response{Response: resp, body: body}, nil
}

// mustRead reads one response or fails the test.
func (c *client) mustRead(method string) *response {
	c.t.Helper()
	r, err := c.read(method)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	return r
}

// roundTrip writes a request and reads its response.
func (c *client) roundTrip(method, req string) *response {
	c.t.Helper()
	c.write(req)
	return c.mustRead(method)
}

// expectClosed waits until the engine closes the connection (EOF or reset),
// failing if the connection times out or yields a byte.
func (c *client) expectClosed(what string) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(waitLong))
	b := make([]byte, 1)
	n, err := c.br.Read(b)
	var ne net.Error
	switch {
	case n > 0:
		c.t.Fatalf("%s: got a byte %q, want the connection closed", what, b[:n])
	case errors.As(err, &ne) && ne.Timeout():
		c.t.Fatalf("%s: connection still open after %v", what, waitLong)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(ioTimeout))
}

// req builds a raw request. xpt "" omits X-Proxy-To; extra lines end in CRLF.
func req(method, target, host, xpt string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	if host != "" {
		fmt.Fprintf(&b, "Host: %s\r\n", host)
	}
	if xpt != "" {
		fmt.Fprintf(&b, "X-Proxy-To: %s\r\n", xpt)
	}
	for _, x := range extra {
		b.WriteString(x)
	}
	b.WriteString("\r\n")
	return b.String()
}

// get is an absolute-form GET of origin path through xpt.
func get(origin, path, xpt string, extra ...string) string {
	return req("GET", "http://"+origin+path, origin, xpt, extra...)
}

// connectReq is a CONNECT to target through xpt.
func connectReq(target, xpt string, extra ...string) string {
	return req("CONNECT", target, target, xpt, extra...)
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// checkProxyError asserts an answer proxyto made itself.
func checkProxyError(t *testing.T, r *response, status int, typ string) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("status %d, want %d (Proxy-Status %q, body %q)", r.StatusCode, status, r.Header.Get("Proxy-Status"), r.body)
	}
	ps := r.Header.Get("Proxy-Status")
	if !strings.Contains(ps, "error="+typ) {
		t.Fatalf("Proxy-Status %q, want error=%s", ps, typ)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want text/plain", ct)
	}
}

// ---------------------------------------------------------------- upstream proxy

// testProxy is the harness's upstream proxy (CONNECT tunnels and
// absolute-form requests, optional Basic auth, counters) under the names the
// in-process tests use.
type testProxy struct {
	*harness.WireUpstream
	addr string
}

type seenReq struct {
	method, uri string
	header      http.Header
	nth         int // request number on its connection, from 1
}

// startProxy starts an upstream proxy; users, when it holds an entry, is the
// one user → password it requires.
func startProxy(t *testing.T, users map[string]string) *testProxy {
	t.Helper()
	var opt harness.WireUpstreamOptions
	if len(users) > 1 {
		t.Fatalf("startProxy: one user at most, got %d", len(users))
	}
	for u, pw := range users {
		opt.Auth, opt.User, opt.Pass = true, u, pw
	}
	u := harness.StartWireUpstream(t, opt)
	return &testProxy{WireUpstream: u, addr: u.Addr}
}

// seenRequests returns the request heads the proxy received, parsed.
func (p *testProxy) seenRequests() []seenReq {
	var out []seenReq
	nth := map[int]int{}
	for _, h := range p.Heads() {
		nth[h.Conn]++
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(h.Head.Raw)))
		if err != nil {
			panic(fmt.Sprintf("upstream recorded an unparsable head %q: %v", h.Head.Raw, err))
		}
		out = append(out, seenReq{method: r.Method, uri: r.RequestURI, header: r.Header, nth: nth[h.Conn]})
	}
	return out
}

// ---------------------------------------------------------------- origins and targets

// startOrigin is the harness's origin with a few behaviours by path:
//
//	/echo        200; headers X-Method, X-Uri, X-Body-Sha256, X-Body-Len and
//	             X-Saw-Proxy-To (how many X-Proxy-To fields arrived); body
//	             "uri=<target>"
//	/chunked     200, chunked: "chunk-0;" … "chunk-4;", one write each
//	/nocontent   204
//	/notmodified 304 with ETag "v1"
//	/head        200, Content-Length 11, "hello world" (no body for HEAD)
//	/upgrade     101 to "echo" when asked (Upgrade: echo), then echoes
func startOrigin(t *testing.T) *harness.WireOrigin {
	t.Helper()
	o := harness.StartWireOrigin(t)
	o.Handle("/echo", func(x *harness.OriginExchange) bool {
		r := x.ReadBody()
		_, target, _ := x.Head.RequestLine()
		body := "uri=" + target
		head := fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Method: %s\r\nX-Uri: %s\r\nX-Body-Sha256: %s\r\nX-Body-Len: %d\r\nX-Saw-Proxy-To: %d\r\n"+
			"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n",
			x.Method, target, r.BodySHA, r.BodyLen, len(x.Head.Values("X-Proxy-To")), len(body))
		if x.Method != http.MethodHead {
			head += body
		}
		x.WriteString(head)
		return true
	})
	o.Handle("/chunked", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		x.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := range 5 {
			if harness.WriteChunked(x, []byte(fmt.Sprintf("chunk-%d;", i))) != nil {
				return false
			}
		}
		return harness.WriteLastChunk(x) == nil
	})
	o.Handle("/nocontent", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		x.WriteString("HTTP/1.1 204 No Content\r\n\r\n")
		return true
	})
	o.Handle("/notmodified", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		x.WriteString("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")
		return true
	})
	o.Handle("/head", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
		if x.Method != http.MethodHead {
			head += "hello world"
		}
		x.WriteString(head)
		return true
	})
	o.Handle("/upgrade", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		if !strings.EqualFold(x.Head.Get("Upgrade"), "echo") {
			const msg = "want Upgrade: echo\n"
			x.WriteString(fmt.Sprintf("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg))
			return true
		}
		x.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		if _, err := io.Copy(x.Conn, x.R); err == nil {
			if cw, ok := x.Conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}
		return false
	})
	return o
}

func originHost(o *harness.WireOrigin) string { return o.Addr }

// startTCP serves raw TCP connections with handle and returns its address.
func startTCP(t *testing.T, handle func(c *net.TCPConn)) string {
	return harness.StartTCPOrigin(t, handle).Addr
}

// startEcho echoes everything and half-closes after the client did.
func startEcho(t *testing.T) string { return harness.StartEchoOrigin(t).Addr }

// startSilent accepts and reads, never answering.
func startSilent(t *testing.T) string { return harness.StartSilentOrigin(t).Addr }

// openTunnel CONNECTs to target through xpt and checks the 200.
func openTunnel(t *testing.T, addr, target, xpt string) *client {
	t.Helper()
	c := dialClient(t, addr)
	r := c.roundTrip("CONNECT", connectReq(target, xpt))
	if r.StatusCode != 200 {
		t.Fatalf("CONNECT: status %d (Proxy-Status %q, body %q)", r.StatusCode, r.Header.Get("Proxy-Status"), r.body)
	}
	return c
}

// echoCheck writes msg in the tunnel and reads it back.
func (c *client) echoCheck(msg string) {
	c.t.Helper()
	c.write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c.br, got); err != nil {
		c.t.Fatalf("echo read: %v", err)
	}
	if string(got) != msg {
		c.t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// ---------------------------------------------------------------- observer

type record struct {
	client   netip.AddrPort
	kind     engine.Kind
	method   string
	target   string
	upstream string
	status   int
	in, out  int64
	errType  proxystatus.Type
	detail   string
	route    int
	user     int
}

// obsStats is what the recorder counted.
type obsStats struct {
	clientsOpened, clientsClosed int
	tunnelsOpened, tunnelsClosed int
	dials, handshakes            int
	poolHits, poolMisses         int
	limits                       [engine.NumLimitReasons]int
	proxyFailures                [engine.NumProxyFailures]int
	compression                  [compression.NumReasons]int
	up, down                     int64
	ejected                      map[int]int      // by route ID (-1: X-Proxy-To lists)
	relayedBy                    map[[2]int]int64 // bytes by (route, user)
	records                      []record
}

// recorder is an engine.Observer keeping counts and copies of records.
type recorder struct {
	mu sync.Mutex
	s  obsStats
}

var _ engine.Observer = (*recorder)(nil)

func (r *recorder) with(f func(s *obsStats)) { r.mu.Lock(); f(&r.s); r.mu.Unlock() }

func (r *recorder) ClientOpened() { r.with(func(s *obsStats) { s.clientsOpened++ }) }
func (r *recorder) ClientClosed() { r.with(func(s *obsStats) { s.clientsClosed++ }) }
func (r *recorder) TunnelOpened() { r.with(func(s *obsStats) { s.tunnelsOpened++ }) }
func (r *recorder) TunnelClosed() { r.with(func(s *obsStats) { s.tunnelsClosed++ }) }
func (r *recorder) UpstreamDialed(time.Duration, proxystatus.Type) {
	r.with(func(s *obsStats) { s.dials++ })
}
func (r *recorder) UpstreamHandshake(time.Duration, proxystatus.Type) {
	r.with(func(s *obsStats) { s.handshakes++ })
}
func (r *recorder) PoolUsed(hit bool) {
	r.with(func(s *obsStats) {
		if hit {
			s.poolHits++
		} else {
			s.poolMisses++
		}
	})
}
func (r *recorder) LimitRejected(l engine.LimitReason) { r.with(func(s *obsStats) { s.limits[l]++ }) }
func (r *recorder) ProxyHeaderFailed(f engine.ProxyFailure) {
	r.with(func(s *obsStats) { s.proxyFailures[f]++ })
}
func (r *recorder) CompressionDecided(v compression.Reason) {
	r.with(func(s *obsStats) { s.compression[v]++ })
}
func (r *recorder) Relayed(route, user, up, down int) {
	r.with(func(s *obsStats) {
		s.up += int64(up)
		s.down += int64(down)
		if s.relayedBy == nil {
			s.relayedBy = map[[2]int]int64{}
		}
		s.relayedBy[[2]int{route, user}] += int64(up + down)
	})
}
func (r *recorder) UpstreamEjected(route int) {
	r.with(func(s *obsStats) {
		if s.ejected == nil {
			s.ejected = map[int]int{}
		}
		s.ejected[route]++
	})
}
func (r *recorder) Done(x *engine.Record) {
	rc := record{
		client: x.Client, kind: x.Kind, method: string(x.Method), target: string(x.Target), upstream: string(x.Upstream),
		status: x.Status, in: x.BytesIn, out: x.BytesOut, errType: x.Error, detail: x.Detail,
		route: x.Route, user: x.User,
	}
	r.with(func(s *obsStats) { s.records = append(s.records, rc) })
}

func (r *recorder) snapshot() obsStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := r.s
	cp.records = append([]record(nil), r.s.records...)
	cp.ejected = maps.Clone(r.s.ejected)
	cp.relayedBy = maps.Clone(r.s.relayedBy)
	return cp
}

// eventually polls cond until it holds or waitLong passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settled waits until every client and tunnel the engine saw was closed.
func (r *recorder) settled(t *testing.T) obsStats {
	t.Helper()
	var s obsStats
	eventually(t, "observer to balance", func() bool {
		s = r.snapshot()
		return s.clientsOpened == s.clientsClosed && s.tunnelsOpened == s.tunnelsClosed
	})
	return s
}

package itest

// Connections in plain-HTTP forwarding (docs/behaviour.md, "Requests", "Talking to the upstream"): client keep-alive and
// pipelining, HTTP/1.0, the idle timeout, the upstream connection pool, and
// Upgrade.

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// TestHTTPKeepAlive: several requests, one after the other, on one client
// connection all get their answers.
func TestHTTPKeepAlive(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)
	c := httpDial(t, p)
	for i := range 5 {
		path := fmt.Sprintf("/ka/%d", i)
		c.WriteString(httpGetVia(origin, path, creds+up.Addr))
		httpWantOK(t, httpReadResp(t, c, "GET"), harness.SummaryBody("GET", path, nil))
	}
	noSecretInLogs(t, p)
}

// TestHTTPPipelining: requests written all at once, each naming a different
// upstream, are answered in order, and each upstream gets only its own.
func TestHTTPPipelining(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	// The first answer is the slowest, so a proxy answering in completion
	// order would get it wrong. (A delay, not an assertion on time.)
	origin.Handle("/pipe/0", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		httpPause()
		return harness.OriginSummary(x)
	})
	var ups []*harness.WireUpstream
	var all strings.Builder
	for i := range 3 {
		ups = append(ups, harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass}))
		all.WriteString(httpGetVia(origin, fmt.Sprintf("/pipe/%d", i), creds+ups[i].Addr))
	}
	// A POST with a body in the middle of the pipeline too.
	post := "pipelined body"
	all.WriteString(httpHead("POST "+origin.URL("/pipe/post")+" HTTP/1.1", "Host: "+origin.Addr,
		"X-Proxy-To: "+creds+ups[1].Addr, fmt.Sprintf("Content-Length: %d", len(post))) + post)
	all.WriteString(httpGetVia(origin, "/pipe/last", creds+ups[2].Addr))

	p := harness.StartProxyto(t)
	c := httpDial(t, p)
	c.WriteString(all.String())
	for i := range 3 {
		httpWantOK(t, httpReadResp(t, c, "GET"), harness.SummaryBody("GET", fmt.Sprintf("/pipe/%d", i), nil))
	}
	httpWantOK(t, httpReadResp(t, c, "POST"), harness.SummaryBody("POST", "/pipe/post", []byte(post)))
	httpWantOK(t, httpReadResp(t, c, "GET"), harness.SummaryBody("GET", "/pipe/last", nil))

	want := [][]string{{"/pipe/0"}, {"/pipe/1", "/pipe/post"}, {"/pipe/2", "/pipe/last"}}
	for i, u := range ups {
		var got []string
		for _, h := range u.Heads() {
			_, target, _ := h.Head.RequestLine()
			got = append(got, strings.TrimPrefix(target, "http://"+origin.Addr))
		}
		if strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("upstream %d received %q, want %q", i, got, want[i])
		}
	}
	noSecretInLogs(t, p)
}

// httpPause sleeps briefly to make a race visible; never used to assert time.
func httpPause() { time.Sleep(200 * time.Millisecond) }

// TestHTTP10: an HTTP/1.0 request without keep-alive gets its answer and then
// the connection closes; with Connection: keep-alive the connection may stay
// open, and if it does, it serves the next request.
func TestHTTP10(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)

	t.Run("close", func(t *testing.T) {
		c, r := httpRoundTrip(t, p, "GET", httpHead("GET "+origin.URL("/ten")+" HTTP/1.0",
			"Host: "+origin.Addr, "X-Proxy-To: "+creds+up.Addr))
		httpWantOK(t, r, harness.SummaryBody("GET", "/ten", nil))
		if rest := httpWantClosed(t, c); rest != "" {
			t.Errorf("bytes after the response: %q", rest)
		}
	})

	t.Run("keep-alive", func(t *testing.T) {
		c, r := httpRoundTrip(t, p, "GET", httpHead("GET "+origin.URL("/ten-ka")+" HTTP/1.0",
			"Host: "+origin.Addr, "X-Proxy-To: "+creds+up.Addr, "Connection: keep-alive"))
		httpWantOK(t, r, harness.SummaryBody("GET", "/ten-ka", nil))
		if r.Head.HasToken("Connection", "close") {
			if rest := httpWantClosed(t, c); rest != "" {
				t.Errorf("bytes after a Connection: close response: %q", rest)
			}
			return
		}
		c.WriteString(httpHead("GET "+origin.URL("/ten-ka2")+" HTTP/1.0",
			"Host: "+origin.Addr, "X-Proxy-To: "+creds+up.Addr, "Connection: keep-alive"))
		r2, _, err := harness.ReadFinalWireResponse(c.R, "GET")
		switch {
		case err == nil:
			httpWantOK(t, r2, harness.SummaryBody("GET", "/ten-ka2", nil))
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), harness.IsReset(err):
			// proxyto closed instead of keeping it alive: allowed.
		default:
			t.Fatalf("second HTTP/1.0 request: %v", err)
		}
	})
	noSecretInLogs(t, p)
}

// TestHTTPIdleTimeout: a kept-alive client connection left idle is closed
// after --idle-timeout (waited for generously, not timed).
func TestHTTPIdleTimeout(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--idle-timeout", "1s")
	c, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/idle", up.Addr))
	httpWantOK(t, r, harness.SummaryBody("GET", "/idle", nil))
	if rest := httpWantClosed(t, c); rest != "" {
		t.Errorf("bytes on the idle connection: %q", rest)
	}
}

// upstreamConnOf returns the number of the upstream connection on which the
// request for path arrived.
func upstreamConnOf(t *testing.T, u *harness.WireUpstream, origin *harness.WireOrigin, path string) int {
	t.Helper()
	for _, h := range u.Heads() {
		_, target, _ := h.Head.RequestLine()
		if target == origin.URL(path) {
			return h.Conn
		}
	}
	t.Fatalf("the upstream never received %s", path)
	return 0
}

// TestHTTPUpstreamPool: plain-HTTP connections to an upstream are pooled per
// (upstream, credentials) and reused only after a cleanly finished exchange
// (docs/behaviour.md, "Talking to the upstream").
func TestHTTPUpstreamPool(t *testing.T) {
	origin := harness.StartWireOrigin(t)

	t.Run("same client connection", func(t *testing.T) {
		up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
		p := harness.StartProxyto(t)
		c := httpDial(t, p)
		for i := range 5 {
			path := fmt.Sprintf("/pool/a%d", i)
			c.WriteString(httpGetVia(origin, path, creds+up.Addr))
			httpWantOK(t, httpReadResp(t, c, "GET"), harness.SummaryBody("GET", path, nil))
		}
		if n := up.Conns(); n != 1 {
			t.Errorf("5 sequential requests opened %d upstream connections, want 1", n)
		}
	})

	t.Run("separate client connections", func(t *testing.T) {
		up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
		// One event loop: the exchange is finished (and its upstream
		// connection pooled) before the next client connection is served.
		p := harness.StartProxyto(t, "--loops", "1")
		for i := range 5 {
			path := fmt.Sprintf("/pool/b%d", i)
			c, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, path, creds+up.Addr))
			httpWantOK(t, r, harness.SummaryBody("GET", path, nil))
			c.Close()
		}
		if n := up.Conns(); n != 1 {
			t.Errorf("5 sequential requests on 5 client connections opened %d upstream connections, want 1", n)
		}
	})

	t.Run("credentials separate pools", func(t *testing.T) {
		up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{}) // accepts any credentials
		p := harness.StartProxyto(t)
		c := httpDial(t, p)
		users := []string{"alice:pw-a@", "bob:pw-b@", "alice:pw-a@", "bob:pw-b@", ""}
		for i, ui := range users {
			path := fmt.Sprintf("/pool/c%d", i)
			c.WriteString(httpGetVia(origin, path, ui+up.Addr))
			httpWantOK(t, httpReadResp(t, c, "GET"), harness.SummaryBody("GET", path, nil))
		}
		byCreds := map[string]map[int]bool{}
		connCreds := map[int]string{}
		for _, h := range up.Heads() {
			auth := h.Head.Get("Proxy-Authorization")
			if byCreds[auth] == nil {
				byCreds[auth] = map[int]bool{}
			}
			byCreds[auth][h.Conn] = true
			if prev, ok := connCreds[h.Conn]; ok && prev != auth {
				t.Errorf("upstream connection %d carried requests with two different credentials (%q and %q)", h.Conn, prev, auth)
			}
			connCreds[h.Conn] = auth
		}
		if len(byCreds) != 3 {
			t.Errorf("upstream saw %d distinct Proxy-Authorization values, want 3 (alice, bob, none)", len(byCreds))
		}
		if n := up.Conns(); n != 3 {
			t.Errorf("%d upstream connections for 3 credentials used sequentially, want 3", n)
		}
	})

	t.Run("connection close not reused", func(t *testing.T) {
		// The origin answers Connection: close; the WireUpstream passes that
		// on but keeps its side open, so only proxyto can decide not to
		// reuse it.
		up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
		p := harness.StartProxyto(t)
		c := httpDial(t, p)
		c.WriteString(httpGetVia(origin, "/conn-close", creds+up.Addr))
		httpWantOK(t, httpReadResp(t, c, "GET"), harness.SummaryBody("GET", "/conn-close", nil))
		c2 := httpDial(t, p)
		c2.WriteString(httpGetVia(origin, "/pool/after-close", creds+up.Addr))
		httpWantOK(t, httpReadResp(t, c2, "GET"), harness.SummaryBody("GET", "/pool/after-close", nil))
		if a, b := upstreamConnOf(t, up, origin, "/conn-close"), upstreamConnOf(t, up, origin, "/pool/after-close"); a == b {
			t.Errorf("the upstream connection whose response said Connection: close was reused")
		}
	})

	t.Run("idle connection closed by upstream", func(t *testing.T) {
		up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
		p := harness.StartProxyto(t)
		_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/pool/d1", creds+up.Addr))
		httpWantOK(t, r, harness.SummaryBody("GET", "/pool/d1", nil))
		up.DropConns() // the pooled connection dies while idle
		for _, path := range []string{"/pool/d2", "/pool/d3"} {
			_, r = httpRoundTrip(t, p, "GET", httpGetVia(origin, path, creds+up.Addr))
			httpWantOK(t, r, harness.SummaryBody("GET", path, nil))
		}
		if n := up.Conns(); n < 2 {
			t.Errorf("upstream accepted %d connections; the dropped one must have been replaced", n)
		}
	})
}

// TestHTTPUpgrade: Connection: Upgrade + Upgrade: websocket go upstream, and
// after the origin's 101 the connection relays bytes both ways.
func TestHTTPUpgrade(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)

	c := httpDial(t, p)
	c.WriteString(httpGetVia(origin, "/ws", creds+up.Addr,
		"Connection: Upgrade", "Upgrade: websocket",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"))
	r, err := harness.ReadWireResponse(c.R, "GET")
	if err != nil {
		t.Fatalf("reading the 101: %v", err)
	}
	if r.Status != 101 {
		t.Fatalf("answer %q, want 101 Switching Protocols", r.Head.Raw)
	}
	if !strings.EqualFold(r.Head.Get("Upgrade"), "websocket") || !r.Head.HasToken("Connection", "upgrade") {
		t.Errorf("101 without Connection: Upgrade / Upgrade: websocket: %q", r.Head.Raw)
	}
	if r.Head.Get("X-Upgraded") != "yes" {
		t.Errorf("101's end-to-end field lost: %q", r.Head.Raw)
	}
	h := up.Heads()[len(up.Heads())-1].Head
	if !h.HasToken("Connection", "upgrade") || h.Get("Upgrade") != "websocket" || h.Get("Sec-WebSocket-Key") == "" {
		t.Errorf("upgrade fields did not reach the upstream: %q", h.Raw)
	}
	for _, msg := range []string{"ping", strings.Repeat("frame-bytes;", 10000), "last"} {
		c.EchoRoundTrip(msg)
	}
	c.CloseWrite()
	if rest := httpWantClosed(t, c); rest != "" {
		t.Errorf("bytes after the echo finished: %q", rest)
	}
	noSecretInLogs(t, p)
}

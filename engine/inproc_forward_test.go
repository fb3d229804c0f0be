package engine_test

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/engine"
)

// TestInprocForwardKeepAlive runs a sequence of plain-HTTP exchanges on one
// client connection; each row checks its own response and, by succeeding
// after the previous one, the framing of the one before.
func TestInprocForwardKeepAlive(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	c := dialClient(t, te.addr)

	chunkedBody := "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
	helloSum := fmt.Sprintf("%x", sha256.Sum256([]byte("hello world")))
	cases := []struct {
		name   string
		method string
		req    string
		check  func(t *testing.T, r *response)
	}{
		{"absolute-form GET", "GET", get(oh, "/echo?q=1", up.addr), func(t *testing.T, r *response) {
			if r.StatusCode != 200 || string(r.body) != "uri=/echo?q=1" {
				t.Fatalf("%d %q", r.StatusCode, r.body)
			}
			if r.Header.Get("X-Saw-Proxy-To") != "0" {
				t.Errorf("X-Proxy-To reached the origin")
			}
		}},
		{"origin-form GET", "GET", req("GET", "/echo?o=1", oh, up.addr), func(t *testing.T, r *response) {
			if r.StatusCode != 200 || string(r.body) != "uri=/echo?o=1" {
				t.Fatalf("%d %q", r.StatusCode, r.body)
			}
		}},
		{"POST with Content-Length", "POST", req("POST", "http://"+oh+"/echo", oh, up.addr, "Content-Length: 11\r\n") + "hello world", func(t *testing.T, r *response) {
			if r.Header.Get("X-Body-Sha256") != helloSum || r.Header.Get("X-Method") != "POST" {
				t.Fatalf("origin saw %s %s", r.Header.Get("X-Method"), r.Header.Get("X-Body-Len"))
			}
		}},
		{"PUT chunked", "PUT", req("PUT", "http://"+oh+"/echo", oh, up.addr, "Transfer-Encoding: chunked\r\n") + chunkedBody, func(t *testing.T, r *response) {
			if r.Header.Get("X-Body-Sha256") != helloSum || r.Header.Get("X-Method") != "PUT" {
				t.Fatalf("origin saw %s %s bytes", r.Header.Get("X-Method"), r.Header.Get("X-Body-Len"))
			}
		}},
		{"chunked response", "GET", get(oh, "/chunked", up.addr), func(t *testing.T, r *response) {
			if len(r.TransferEncoding) != 1 || r.TransferEncoding[0] != "chunked" {
				t.Errorf("Transfer-Encoding %v, want chunked kept", r.TransferEncoding)
			}
			if string(r.body) != "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;" {
				t.Fatalf("body %q", r.body)
			}
		}},
		{"HEAD", "HEAD", req("HEAD", "http://"+oh+"/head", oh, up.addr), func(t *testing.T, r *response) {
			if r.StatusCode != 200 || r.ContentLength != 11 || len(r.body) != 0 {
				t.Fatalf("%d len %d body %q", r.StatusCode, r.ContentLength, r.body)
			}
		}},
		{"204", "GET", get(oh, "/nocontent", up.addr), func(t *testing.T, r *response) {
			if r.StatusCode != 204 || len(r.body) != 0 {
				t.Fatalf("%d %q", r.StatusCode, r.body)
			}
		}},
		{"304", "GET", get(oh, "/notmodified", up.addr, "If-None-Match: \"v1\"\r\n"), func(t *testing.T, r *response) {
			if r.StatusCode != 304 || len(r.body) != 0 || r.Header.Get("ETag") != `"v1"` {
				t.Fatalf("%d %q %q", r.StatusCode, r.body, r.Header.Get("ETag"))
			}
		}},
		{"DELETE", "DELETE", req("DELETE", "http://"+oh+"/echo", oh, up.addr), func(t *testing.T, r *response) {
			if r.Header.Get("X-Method") != "DELETE" {
				t.Fatalf("origin saw %q", r.Header.Get("X-Method"))
			}
		}},
		{"extension method", "PURGE", req("PURGE", "http://"+oh+"/echo", oh, up.addr), func(t *testing.T, r *response) {
			if r.Header.Get("X-Method") != "PURGE" {
				t.Fatalf("origin saw %q", r.Header.Get("X-Method"))
			}
		}},
		{"GET after all that", "GET", get(oh, "/echo?last", up.addr), func(t *testing.T, r *response) {
			if string(r.body) != "uri=/echo?last" {
				t.Fatalf("%q", r.body)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.roundTrip(tc.method, tc.req)
			tc.check(t, r)
			if r.Close {
				t.Fatalf("response closes the client connection")
			}
		})
	}
	if st := te.rec.snapshot(); st.clientsOpened != 1 {
		t.Errorf("%d client connections, want 1 kept alive", st.clientsOpened)
	}
}

func TestInprocForwardPipelined(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	c := dialClient(t, te.addr)
	var b strings.Builder
	const n = 6
	for i := range n {
		if i == 2 {
			b.WriteString(req("POST", "http://"+oh+"/echo?2", oh, up.addr, "Content-Length: 5\r\n") + "body!")
			continue
		}
		b.WriteString(get(oh, fmt.Sprintf("/echo?%d", i), up.addr))
	}
	c.write(b.String()) // all at once
	for i := range n {
		r := c.mustRead("GET")
		if want := fmt.Sprintf("uri=/echo?%d", i); string(r.body) != want {
			t.Fatalf("response %d: %q, want %q", i, r.body, want)
		}
	}
}

// TestInprocForwardPool: connections to an upstream are reused per
// (upstream, credentials), on one client connection (so one loop).
func TestInprocForwardPool(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	cases := []struct {
		name     string
		maxIdle  int
		creds    []string
		accepted int64
	}{
		{"same credentials", 0, []string{"a:1", "a:1", "a:1", "a:1", "a:1"}, 1},
		{"no credentials", 0, []string{"", "", "", "", ""}, 1},
		{"two credentials", 0, []string{"a:1", "b:2", "a:1", "b:2", "a:1"}, 2},
		{"same user, other password", 0, []string{"a:1", "a:2", "a:1"}, 2},
		{"pooling disabled", -1, []string{"a:1", "a:1", "a:1", "a:1", "a:1"}, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := startProxy(t, nil) // takes any credentials
			te := startEngine(t, engine.Config{PoolMaxIdlePerKey: tc.maxIdle})
			c := dialClient(t, te.addr)
			for i, cr := range tc.creds {
				xpt := up.addr
				if cr != "" {
					xpt = cr + "@" + up.addr
				}
				r := c.roundTrip("GET", get(oh, fmt.Sprintf("/echo?%d", i), xpt))
				if r.StatusCode != 200 {
					t.Fatalf("request %d (%q): status %d", i, cr, r.StatusCode)
				}
			}
			seen := up.seenRequests()
			for i, cr := range tc.creds {
				want := ""
				if cr != "" {
					u, p, _ := strings.Cut(cr, ":")
					want = basic(u, p)
				}
				if got := seen[i].header.Get("Proxy-Authorization"); got != want {
					t.Errorf("request %d reached the upstream with Proxy-Authorization %q, want %q", i, got, want)
				}
			}
			if got := up.Conns(); got != tc.accepted {
				t.Errorf("upstream accepted %d connections, want %d", got, tc.accepted)
			}
		})
	}
}

// TestInprocForwardPoolClosedIdle: the upstream closes a pooled connection;
// the next request still succeeds.
func TestInprocForwardPoolClosedIdle(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)

	t.Run("closed while idle", func(t *testing.T) {
		up := startProxy(t, nil)
		te := startEngine(t, engine.Config{})
		c := dialClient(t, te.addr)
		for i := range 4 {
			if r := c.roundTrip("GET", get(oh, fmt.Sprintf("/echo?%d", i), up.addr)); r.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, r.StatusCode, r.Header.Get("Proxy-Status"))
			}
			// The proxy's idle-connection timeout fires; the next request
			// may find the connection still in the pool or already dropped.
			// (After a few such closes right after responses, proxyto stops
			// pooling this upstream and closes the connection itself.)
			eventually(t, "upstream connection idle", func() bool { return up.CloseIdle() == 1 || up.Open() == 0 })
		}
		if got := up.Conns(); got != 4 {
			t.Errorf("upstream accepted %d, want 4", got)
		}
	})

	t.Run("closed on reuse", func(t *testing.T) {
		// The race a pool can lose: the upstream closes the connection as
		// the request arrives, without answering. Nothing of the request
		// body was consumed, so proxyto retries on a fresh connection.
		up := startProxy(t, nil)
		te := startEngine(t, engine.Config{})
		c := dialClient(t, te.addr)
		if r := c.roundTrip("GET", get(oh, "/echo?first", up.addr)); r.StatusCode != 200 {
			t.Fatalf("first: %d", r.StatusCode)
		}
		up.DropReused(1)
		r := c.roundTrip("GET", get(oh, "/echo?second", up.addr))
		if r.StatusCode != 200 || string(r.body) != "uri=/echo?second" {
			t.Fatalf("request on a pooled connection closed by the upstream: %d %s %q", r.StatusCode, r.Header.Get("Proxy-Status"), r.body)
		}
		if got := up.Conns(); got != 2 {
			t.Errorf("upstream accepted %d, want 2 (one retry)", got)
		}
	})
}

func TestInprocForwardUpgrade(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	c := dialClient(t, te.addr)
	c.write(get(oh, "/upgrade", up.addr, "Connection: Upgrade\r\nUpgrade: echo\r\n"))
	r := c.mustRead("GET")
	if r.StatusCode != 101 || !strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
		t.Fatalf("status %d, Upgrade %q", r.StatusCode, r.Header.Get("Upgrade"))
	}
	if err := echoThrough(c, 2<<20, 5); err != nil {
		t.Fatal(err)
	}
	st := te.rec.settled(t)
	if st.tunnelsOpened != 1 {
		t.Errorf("TunnelOpened %d, want 1", st.tunnelsOpened)
	}
}

// TestInprocKeepAliveBadSecondRequest: a malformed request after a
// successful one on the same connection is answered 400 like a first one.
func TestInprocKeepAliveBadSecondRequest(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{MaxHeaderBytes: 4096})
	for _, tc := range []struct {
		name   string
		req    string
		status int
	}{
		{"malformed", "NOT A REQUEST\r\n\r\n", 400},
		{"head too large", "GET http://" + oh + "/ HTTP/1.1\r\nX-Big: " + strings.Repeat("x", 8000) + "\r\n\r\n", 431},
		{"missing X-Proxy-To", get(oh, "/echo", ""), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialClient(t, te.addr)
			// As a first request it is answered.
			c0 := dialClient(t, te.addr)
			r0, err := func() (*response, error) { c0.write(tc.req); return c0.read("GET") }()
			if err != nil || r0.StatusCode != tc.status {
				t.Fatalf("as a first request: %v %v", r0, err)
			}
			if r := c.roundTrip("GET", get(oh, "/echo", up.addr)); r.StatusCode != 200 {
				t.Fatalf("first request: %d", r.StatusCode)
			}
			c.write(tc.req)
			r, err := c.read("GET")
			if err != nil {
				t.Fatalf("as a second request on a kept-alive connection: no answer (%v), want %d", err, tc.status)
			}
			checkProxyError(t, r, tc.status, "http_request_error")
		})
	}
}

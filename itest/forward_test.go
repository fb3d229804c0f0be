package itest

// Plain-HTTP forwarding (docs/behaviour.md): absolute-form and origin-form requests
// go to the upstream in absolute-form with its Proxy-Authorization; header
// bytes are preserved both ways, hop-by-hop fields removed; every method.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/itest/harness"
)

// exactResponseHead is the head the origin answers /exact with: end-to-end
// fields in odd case, order, duplicates and spacing, mixed with hop-by-hop
// ones (Connection and the field it names, Keep-Alive, Proxy-Connection,
// Trailer) that proxyto must drop.
var exactResponseHead = []string{
	"Server: itest-origin/1.0 (exact; bytes)",
	"x-lower-resp: Mixed  Case",
	"X-Dup-Resp: a",
	"Connection: X-Hop-Resp, keep-alive",
	"X-Hop-Resp: must not reach the client",
	"X-Dup-Resp: b",
	"Keep-Alive: timeout=5, max=99",
	"X-No-Space:tight",
	"Proxy-Connection: keep-alive",
	"Trailer: X-Never-Resp",
	"X-Spacing: a   b\tc",
	"Content-Type: text/plain",
	"Content-Length: 3",
}

// exactResponseE2E is exactResponseHead without its hop-by-hop fields.
var exactResponseE2E = []string{
	"Server: itest-origin/1.0 (exact; bytes)",
	"x-lower-resp: Mixed  Case",
	"X-Dup-Resp: a",
	"X-Dup-Resp: b",
	"X-No-Space:tight",
	"X-Spacing: a   b\tc",
	"Content-Type: text/plain",
	"Content-Length: 3",
}

func handleExact(o *harness.WireOrigin) {
	o.Handle("/exact", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		x.WriteString(httpHead("HTTP/1.1 200 OK", exactResponseHead...) + "ok\n")
		return true
	})
}

// TestHTTPAbsoluteFormExactHeads checks byte for byte what the upstream gets
// for an absolute-form GET and what the client gets back (docs/behaviour.md, "Talking to the upstream"): the
// absolute-form request line, one Proxy-Authorization built from the
// percent-decoded credentials, and the client's end-to-end fields in order,
// case, duplicates and spacing, with X-Proxy-To, the client's own
// Proxy-Authorization, Proxy-Connection, Connection and the field it names,
// Keep-Alive, TE, Trailer and (not upgrading) Upgrade gone; the response's end-to-end fields come back
// the same way.
func TestHTTPAbsoluteFormExactHeads(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	handleExact(origin)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)

	for _, tc := range []struct {
		name     string
		userinfo string
		wantAuth string // "" for none, else "user:pass"
	}{
		{"percent-decoded password", "u:p%40ss@", "u:p@ss"},
		{"test credentials", creds, upUser + ":" + upPass},
		{"no credentials", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endToEnd := []string{
				"Host: " + origin.Addr,
				"User-Agent: itest-agent/1.0 (exact; bytes)",
				"X-Vendor-Session: abc",
				"x-lower-case: Mixed  Value",
				"X-Dup: 1",
				"X-Dup: 2",
				"X-No-Space:tight",
				"X-Spacing: a   b\tc",
				"Accept: */*",
			}
			sent := []string{
				endToEnd[0],
				endToEnd[1],
				"X-Proxy-To: " + tc.userinfo + up.Addr,
				endToEnd[2],
				"Proxy-Authorization: Basic Y2xpZW50OnNlY3JldA==",
				"Proxy-Connection: keep-alive",
				endToEnd[3],
				"Connection: keep-alive, X-Hop-Named",
				"X-Hop-Named: must not reach the upstream",
				endToEnd[4],
				"Keep-Alive: timeout=5",
				"TE: trailers",
				endToEnd[5],
				"Trailer: X-Never",
				"Upgrade: itest-proto/1", // not upgrading: Connection does not name it
				endToEnd[6],
				endToEnd[7],
				endToEnd[8],
			}
			before := len(up.Heads())
			_, r := httpRoundTrip(t, p, "GET", httpHead("GET "+origin.URL("/exact?q=1")+" HTTP/1.1", sent...))
			httpWantOK(t, r, "ok\n")

			heads := up.Heads()
			if len(heads) != before+1 {
				t.Fatalf("upstream received %d heads for one request", len(heads)-before)
			}
			h := heads[len(heads)-1].Head
			if !strings.HasSuffix(string(h.Raw), "\r\n\r\n") || strings.Count(string(h.Raw), "\n") != strings.Count(string(h.Raw), "\r\n") {
				t.Errorf("upstream head is not CRLF-delimited: %q", h.Raw)
			}
			if want := "GET " + origin.URL("/exact?q=1") + " HTTP/1.1"; h.Line != want {
				t.Errorf("request line %q, want %q", h.Line, want)
			}
			auth, rest := httpSplitAuth(h.Fields)
			var wantAuth []string
			if tc.wantAuth != "" {
				u, pw, _ := strings.Cut(tc.wantAuth, ":")
				wantAuth = []string{"Proxy-Authorization: " + harness.BasicAuth(u, pw)}
			}
			if !slices.Equal(auth, wantAuth) {
				t.Errorf("Proxy-Authorization lines %q, want %q", auth, wantAuth)
			}
			if !slices.Equal(rest, endToEnd) {
				t.Errorf("header lines at the upstream:\n got %q\nwant %q", rest, endToEnd)
			}

			if r.Head.Line != "HTTP/1.1 200 OK" {
				t.Errorf("status line %q, want the origin's %q", r.Head.Line, "HTTP/1.1 200 OK")
			}
			var got []string
			for _, l := range r.Head.Fields {
				if !isProxytoConnLine(l) {
					got = append(got, l)
				}
			}
			if !slices.Equal(got, exactResponseE2E) {
				t.Errorf("response header lines at the client:\n got %q\nwant %q", got, exactResponseE2E)
			}
		})
	}
	noSecretInLogs(t, p)
}

// TestHTTPOriginForm: "GET /p?q=1" with Host goes upstream as
// "GET http://host/p?q=1" (docs/behaviour.md, "Requests"), Host kept as sent.
func TestHTTPOriginForm(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)

	_, r := httpRoundTrip(t, p, "GET", httpHead("GET /p?q=1 HTTP/1.1",
		"Host: "+origin.Addr, "X-Proxy-To: "+creds+up.Addr, "X-Custom: kept"))
	httpWantOK(t, r, harness.SummaryBody("GET", "/p?q=1", nil))
	heads := up.WaitHeads(1, httpDeadline)
	if len(heads) != 1 {
		t.Fatalf("upstream received %d heads, want 1", len(heads))
	}
	h := heads[0].Head
	if want := "GET http://" + origin.Addr + "/p?q=1 HTTP/1.1"; h.Line != want {
		t.Errorf("request line %q, want %q", h.Line, want)
	}
	if got := h.Values("Host"); !slices.Equal(got, []string{origin.Addr}) {
		t.Errorf("Host %q, want [%q]", got, origin.Addr)
	}
	if got := h.Get("X-Custom"); got != "kept" {
		t.Errorf("X-Custom %q, want kept", got)
	}
	if h.Has("X-Proxy-To") {
		t.Errorf("X-Proxy-To reached the upstream: %q", h.Raw)
	}
	noSecretInLogs(t, p)
}

// TestHTTPMethods: every method is forwarded unchanged, bodies where given,
// and HEAD's answer has no body (docs/behaviour.md, "Requests").
func TestHTTPMethods(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)

	for _, tc := range []struct {
		method string
		body   string
	}{
		{"GET", ""}, {"HEAD", ""}, {"POST", "post body"}, {"PUT", "put body"},
		{"PATCH", "patch body"}, {"DELETE", ""}, {"OPTIONS", ""}, {"TRACE", ""},
		{"PURGE", ""}, {"PROPFIND", "<propfind/>"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			path := "/m/" + strings.ToLower(tc.method) + "?x=1"
			lines := []string{"Host: " + origin.Addr, "X-Proxy-To: " + creds + up.Addr}
			if tc.body != "" {
				lines = append(lines, fmt.Sprintf("Content-Length: %d", len(tc.body)))
			}
			before := len(up.Heads())
			_, r := httpRoundTrip(t, p, tc.method, httpHead(tc.method+" "+origin.URL(path)+" HTTP/1.1", lines...), tc.body)
			want := harness.SummaryBody(tc.method, path, []byte(tc.body))
			if tc.method == "HEAD" {
				if r.Status != 200 || len(r.Body) != 0 {
					t.Fatalf("HEAD: %q with %d body bytes, want 200 and none", r.Head.Line, len(r.Body))
				}
				if got := r.Head.Get("Content-Length"); got != fmt.Sprint(len(want)) {
					t.Errorf("HEAD: Content-Length %q, want the GET's %d", got, len(want))
				}
			} else {
				httpWantOK(t, r, want)
			}
			heads := up.Heads()
			if len(heads) != before+1 {
				t.Fatalf("upstream received %d heads, want 1", len(heads)-before)
			}
			if wantLine := tc.method + " " + origin.URL(path) + " HTTP/1.1"; heads[len(heads)-1].Head.Line != wantLine {
				t.Errorf("request line %q, want %q", heads[len(heads)-1].Head.Line, wantLine)
			}
		})
	}
	noSecretInLogs(t, p)
}

// TestHTTPFailover: with a failover list whose first upstream refuses the
// connection, a plain request goes through the next one (docs/behaviour.md, "X-Proxy-To").
func TestHTTPFailover(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)
	_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/failover", creds+harness.ClosedAddr(t)+", "+creds+up.Addr))
	httpWantOK(t, r, harness.SummaryBody("GET", "/failover", nil))
	if n := len(up.Heads()); n != 1 {
		t.Errorf("second upstream received %d requests, want 1", n)
	}
	noSecretInLogs(t, p)
}

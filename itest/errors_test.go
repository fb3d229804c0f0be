package itest

// Errors proxyto makes itself for CONNECT (docs/behaviour.md, "Errors"): each asserts the status,
// the Proxy-Status error type (and received-status), text/plain, and that the
// upstream password appears in no response and no log line.

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// TestConnectMissingXProxyTo: no X-Proxy-To and no default upstream → 400.
func TestConnectMissingXProxyTo(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	p := harness.StartProxyto(t)
	resp := connectErr(t, p, harness.ConnectHead(echo.Addr, ""))
	wantProxyError(t, resp, 400, "http_request_error", 0)
	if echo.Accepted() != 0 {
		t.Errorf("the target was dialled without an upstream")
	}
}

// TestConnectInvalidXProxyTo: every malformed X-Proxy-To of docs/behaviour.md → 400
// http_request_error, and nothing reaches the upstream (each value would
// otherwise name a working one where it can).
func TestConnectInvalidXProxyTo(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)
	port := strings.TrimPrefix(up.Addr, "127.0.0.1:")
	good := creds + up.Addr
	longHost := strings.Repeat("abcdefgh.", 460) + "example" // > 4 KiB with the rest

	for _, tc := range []struct {
		name  string
		lines []string // X-Proxy-To header lines, sent as is
	}{
		{"empty", []string{"X-Proxy-To: "}},
		{"empty without space", []string{"X-Proxy-To:"}},
		{"only whitespace", []string{"X-Proxy-To:   "}},
		{"repeated header", []string{"X-Proxy-To: " + good, "X-Proxy-To: " + good}},
		{"repeated header, other case", []string{"X-Proxy-To: " + good, "x-proxy-to: " + good}},
		{"unknown scheme", []string{"X-Proxy-To: ftp://" + good}},
		{"path", []string{"X-Proxy-To: http://" + good + "/path"}},
		{"root path", []string{"X-Proxy-To: " + good + "/"}},
		{"query", []string{"X-Proxy-To: " + good + "?a=b"}},
		{"fragment", []string{"X-Proxy-To: " + good + "#frag"}},
		{"missing host", []string{"X-Proxy-To: " + creds + ":" + port}},
		{"missing host with scheme", []string{"X-Proxy-To: http://" + creds + ":" + port}},
		{"scheme only", []string{"X-Proxy-To: http://"}},
		{"credentials only", []string{"X-Proxy-To: " + creds}},
		{"port 0", []string{"X-Proxy-To: " + creds + "127.0.0.1:0"}},
		{"port 65536", []string{"X-Proxy-To: " + creds + "127.0.0.1:65536"}},
		{"port abc", []string{"X-Proxy-To: " + creds + "127.0.0.1:abc"}},
		{"negative port", []string{"X-Proxy-To: " + creds + "127.0.0.1:-" + port}},
		{"empty port", []string{"X-Proxy-To: " + creds + "127.0.0.1:"}},
		{"unbracketed IPv6", []string{"X-Proxy-To: " + creds + "::1:" + port}},
		{"unclosed IPv6 bracket", []string{"X-Proxy-To: " + creds + "[::1:" + port}},
		{"space inside host", []string{"X-Proxy-To: " + creds + "127.0. 0.1:" + port}},
		{"space before port", []string{"X-Proxy-To: " + creds + "127.0.0.1 :" + port}},
		{"tab inside", []string{"X-Proxy-To: " + creds + "127.0.0.1:\t" + port}},
		{"control char", []string{"X-Proxy-To: " + creds + "127.0.0.1\x01:" + port}},
		{"DEL char", []string{"X-Proxy-To: " + creds + "127.0.0.1:" + port + "\x7f"}},
		{"longer than 4 KiB", []string{"X-Proxy-To: " + creds + longHost + ":" + port}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := "CONNECT " + echo.Addr + " HTTP/1.1\r\nHost: " + echo.Addr + "\r\n" +
				strings.Join(tc.lines, "\r\n") + "\r\n\r\n"
			resp := connectErr(t, p, head)
			wantProxyError(t, resp, 400, "http_request_error", 0)
		})
	}
	if n := up.Conns(); n != 0 {
		t.Errorf("the upstream got %d connections from invalid X-Proxy-To values", n)
	}
	noSecretInLogs(t, p)
}

// TestConnectHeaderTooLarge: a request head over --max-header-bytes → 431
// with Proxy-Status http_request_error.
func TestConnectHeaderTooLarge(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--max-header-bytes", "8192")

	// Just under the limit still works.
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr, "X-Filler: "+strings.Repeat("f", 4096))
	c.EchoRoundTrip("fits")

	resp := connectErr(t, p, harness.ConnectHead(echo.Addr, creds+up.Addr, "X-Filler: "+strings.Repeat("f", 12<<10)))
	wantProxyError(t, resp, 431, "http_request_error", 0)
	noSecretInLogs(t, p)
}

// TestConnectUpstreamFailures: each way an upstream can fail maps to its
// status and Proxy-Status type (docs/behaviour.md, "Errors").
func TestConnectUpstreamFailures(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	p := harness.StartProxyto(t)

	for _, tc := range []struct {
		name     string
		upstream func(t *testing.T) string // host:port for X-Proxy-To
		status   int
		errType  string
		received int
	}{
		{"name does not resolve", func(t *testing.T) string { return "proxyto-itest-no-such-host.invalid:3128" },
			502, "dns_error", 0},
		{"connection refused", func(t *testing.T) string { return harness.ClosedAddr(t) },
			502, "connection_refused", 0},
		{"upstream resets", func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.WireReset}).Addr
		}, 502, "connection_terminated", 0},
		{"upstream closes before answering", func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.WireCloseBeforeAnswer}).Addr
		}, 502, "connection_terminated", 0},
		{"upstream answers 407", func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.Wire407}).Addr
		}, 502, "http_request_denied", 407},
		{"upstream wants other credentials", func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: "a-different-password"}).Addr
		}, 502, "http_request_denied", 407},
		{"upstream answers 403", func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.Wire403}).Addr
		}, 502, "destination_unavailable", 403},
		{"upstream answers 503", func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.Wire503}).Addr
		}, 502, "destination_unavailable", 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := connectErr(t, p, harness.ConnectHead(echo.Addr, creds+tc.upstream(t)))
			if resp.Header.Get("Proxy-Authenticate") != "" {
				t.Errorf("proxyto passed the upstream's Proxy-Authenticate to the client")
			}
			wantProxyError(t, resp, tc.status, tc.errType, tc.received)
		})
	}
	noSecretInLogs(t, p)
}

// TestConnectUpstreamHangs: an upstream that never answers the CONNECT →
// 504 http_response_timeout once --response-header-timeout passes.
func TestConnectUpstreamHangs(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.WireHang})
	p := harness.StartProxyto(t, "--response-header-timeout", "1s")
	resp := connectErr(t, p, harness.ConnectHead(echo.Addr, creds+up.Addr))
	wantProxyError(t, resp, 504, "http_response_timeout", 0)
	if n := len(up.Heads()); n != 1 {
		t.Errorf("upstream received %d CONNECTs, want 1", n)
	}
	noSecretInLogs(t, p)
}

// TestConnectLoopDetected: X-Proxy-To naming proxyto's own listener → 508
// proxy_loop_detected, without proxyto connecting to itself in a loop.
func TestConnectLoopDetected(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	p := harness.StartProxyto(t)
	resp := connectErr(t, p, harness.ConnectHead(echo.Addr, creds+p.Addr))
	wantProxyError(t, resp, 508, "proxy_loop_detected", 0)
	// Still serving.
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	c.SetDeadline(time.Minute)
	c.EchoRoundTrip("after the loop")
}

// Errors in plain-HTTP forwarding (docs/behaviour.md, "X-Proxy-To", "Errors") and request smuggling
// (RFC 9112 §6): every response proxyto makes itself has its status, a
// Proxy-Status naming the error, text/plain and no password; ambiguous
// framing is refused with 400 and a closed connection.

// TestHTTPMissingXProxyTo: no X-Proxy-To and no default upstream → 400, and
// nothing is dialled.
func TestHTTPMissingXProxyTo(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	p := harness.StartProxyto(t)
	for _, head := range []string{
		httpHead("GET "+origin.URL("/x")+" HTTP/1.1", "Host: "+origin.Addr),
		httpHead("GET /x HTTP/1.1", "Host: "+origin.Addr),
	} {
		_, r := httpRoundTrip(t, p, "GET", head)
		httpWantError(t, r, 400, "http_request_error", 0)
	}
	if n := origin.Accepted(); n != 0 {
		t.Errorf("the origin was dialled %d times without an upstream", n)
	}
}

// TestHTTPInvalidXProxyTo: malformed X-Proxy-To values on plain requests →
// 400 http_request_error; nothing reaches the upstream.
func TestHTTPInvalidXProxyTo(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)
	good := creds + up.Addr
	for _, tc := range []struct {
		name  string
		lines []string
	}{
		{"empty", []string{"X-Proxy-To: "}},
		{"repeated", []string{"X-Proxy-To: " + good, "X-Proxy-To: " + good}},
		{"unknown scheme", []string{"X-Proxy-To: ftp://" + good}},
		{"path", []string{"X-Proxy-To: " + good + "/path"}},
		{"port 65536", []string{"X-Proxy-To: " + creds + "127.0.0.1:65536"}},
		{"space inside", []string{"X-Proxy-To: " + creds + "127.0. 0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := append([]string{"Host: " + origin.Addr}, tc.lines...)
			_, r := httpRoundTrip(t, p, "GET", httpHead("GET "+origin.URL("/x")+" HTTP/1.1", lines...))
			httpWantError(t, r, 400, "http_request_error", 0)
		})
	}
	if n := up.Conns(); n != 0 {
		t.Errorf("the upstream got %d connections from invalid X-Proxy-To values", n)
	}
	noSecretInLogs(t, p)
}

// TestHTTPUpstreamFailures: each way an upstream can fail a plain request maps
// to its status and Proxy-Status (docs/behaviour.md, "Errors"); a 407 never reaches the client.
func TestHTTPUpstreamFailures(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	p := harness.StartProxyto(t)
	wireUp := func(m harness.WireMode) func(t *testing.T) string {
		return func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: m}).Addr
		}
	}
	for _, tc := range []struct {
		name     string
		upstream func(t *testing.T) string
		status   int
		errType  string
		received int
	}{
		{"name does not resolve", func(t *testing.T) string { return "proxyto-itest-no-such-host.invalid:3128" },
			502, "dns_error", 0},
		{"connection refused", func(t *testing.T) string { return harness.ClosedAddr(t) },
			502, "connection_refused", 0},
		{"upstream resets", wireUp(harness.WireReset), 502, "connection_terminated", 0},
		{"upstream closes before answering", wireUp(harness.WireCloseBeforeAnswer), 502, "connection_terminated", 0},
		{"upstream answers 407", wireUp(harness.Wire407), 502, "http_request_denied", 407},
		{"upstream wants other credentials", func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: "a-different-password"}).Addr
		}, 502, "http_request_denied", 407},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/fail", creds+tc.upstream(t)))
			httpWantError(t, r, tc.status, tc.errType, tc.received)
		})
	}
	noSecretInLogs(t, p)
}

// TestHTTPUpstreamOtherStatusRelayed: a plain request's non-407 error answer
// from the upstream (here 403) is the response, relayed as is.
func TestHTTPUpstreamOtherStatusRelayed(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.Wire403})
	p := harness.StartProxyto(t)
	_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/forbidden", creds+up.Addr))
	if r.Status != 403 || string(r.Body) != "forbidden by upstream\n" {
		t.Errorf("got %q body %q, want the upstream's 403 and its body", r.Head.Line, r.Body)
	}
	noSecretInLogs(t, p)
}

// TestHTTPUpstreamHangs: an upstream that never answers → 504
// http_response_timeout after --response-header-timeout.
func TestHTTPUpstreamHangs(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.WireHang})
	p := harness.StartProxyto(t, "--response-header-timeout", "1s")
	_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/hang", creds+up.Addr))
	httpWantError(t, r, 504, "http_response_timeout", 0)
	noSecretInLogs(t, p)
}

// TestHTTPResponseFailsMidBody: once response bytes reached the client, an
// upstream failure (half a Content-Length body, then a reset) closes the
// client connection; no second response follows the partial one.
func TestHTTPResponseFailsMidBody(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.WireHalfBodyReset})
	p := harness.StartProxyto(t)
	c := httpDial(t, p)
	c.WriteString(httpGetVia(origin, "/half", creds+up.Addr))
	h, err := harness.ReadWireHead(c.R)
	if err != nil {
		t.Fatalf("reading the response head: %v", err)
	}
	if h.StatusCode() != 200 || h.Get("Content-Length") != "100000" {
		t.Fatalf("head %q, want the upstream's 200 with Content-Length: 100000", h.Raw)
	}
	rest := httpWantClosed(t, c)
	if len(rest) >= harness.HalfBodyLength {
		t.Errorf("client got %d body bytes, more than the upstream sent", len(rest))
	}
	if strings.Trim(rest, "x") != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return r != 'x' })
		t.Errorf("after %d body bytes, the client got %.200q: a second response?", i, rest[i:])
	}
	noSecretInLogs(t, p)
}

// TestHTTPSmugglingRefused: ambiguous or invalid request framing (RFC 9112 §6)
// is answered 400 http_request_error and the connection closed; for head-level
// problems nothing reaches the upstream. A bad chunk size, found only in the
// body, may instead just close the connection.
func TestHTTPSmugglingRefused(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)
	for _, tc := range []struct {
		name   string
		lines  []string
		body   string
		inBody bool // the problem is in the body: 400 or just a close
	}{
		{"content-length and transfer-encoding", []string{"Content-Length: 5", "Transfer-Encoding: chunked"}, "0\r\n\r\n", false},
		{"transfer-encoding and content-length", []string{"Transfer-Encoding: chunked", "Content-Length: 5"}, "0\r\n\r\n", false},
		{"two different content-lengths", []string{"Content-Length: 5", "Content-Length: 6"}, "hello!", false},
		{"content-length list of two values", []string{"Content-Length: 5, 6"}, "hello!", false},
		{"content-length +5", []string{"Content-Length: +5"}, "hello", false},
		{"content-length 5 5", []string{"Content-Length: 5 5"}, "hello", false},
		{"content-length 0x5", []string{"Content-Length: 0x5"}, "hello", false},
		{"content-length -1", []string{"Content-Length: -1"}, "", false},
		{"content-length empty", []string{"Content-Length: "}, "", false},
		{"transfer-encoding gzip only", []string{"Transfer-Encoding: gzip"}, "hello", false},
		{"transfer-encoding chunked then gzip", []string{"Transfer-Encoding: chunked, gzip"}, "0\r\n\r\n", false},
		{"transfer-encoding unknown", []string{"Transfer-Encoding: itest-unknown"}, "hello", false},
		{"obsolete line folding", []string{"X-Folded: first", " continued"}, "", false},
		{"obsolete line folding with tab", []string{"X-Folded: first", "\tcontinued"}, "", false},
		{"bad chunk size", []string{"Transfer-Encoding: chunked"}, "zz\r\nhello\r\n0\r\n\r\n", true},
		{"chunk size overflow", []string{"Transfer-Encoding: chunked"}, "1000000000000000000000005\r\nhello\r\n0\r\n\r\n", true},
		{"chunk size with sign", []string{"Transfer-Encoding: chunked"}, "+5\r\nhello\r\n0\r\n\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.Heads())
			lines := append([]string{"Host: " + origin.Addr, "X-Proxy-To: " + up.Addr}, tc.lines...)
			c := httpDial(t, p)
			// A smuggled follow-up request rides behind the body: it must
			// never be answered as a request of its own.
			c.WriteString(httpHead("POST "+origin.URL("/smuggle")+" HTTP/1.1", lines...) + tc.body +
				httpGetVia(origin, "/smuggled", up.Addr))
			r, err := harness.ReadWireResponse(c.R, "POST")
			switch {
			case err == nil:
				httpWantError(t, r, 400, "http_request_error", 0)
				if rest := httpWantClosed(t, c); rest != "" {
					t.Errorf("bytes after the 400: %.200q", rest)
				}
			case tc.inBody && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || harness.IsReset(err)):
				// closed without an answer: allowed for a body-level error
			case errors.Is(err, os.ErrDeadlineExceeded):
				t.Fatalf("proxyto neither answered nor closed: %v", err)
			default:
				t.Fatalf("want 400 and close, got: %v", err)
			}
			for _, h := range up.Heads()[before:] {
				if !tc.inBody {
					t.Errorf("a request with bad framing reached the upstream: %q", h.Head.Raw)
				}
				if strings.Contains(h.Head.Line, "/smuggled") {
					t.Errorf("the smuggled request reached the upstream: %q", h.Head.Raw)
				}
			}
			for _, rq := range origin.Requests() {
				if strings.Contains(rq.Head.Line, "/smuggled") {
					t.Errorf("the smuggled request reached the origin: %q", rq.Head.Raw)
				}
			}
		})
	}
	noSecretInLogs(t, p)
}

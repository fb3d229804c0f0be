package itest

// Errors proxyto makes itself for CONNECT (docs/behaviour.md, "Errors"): each asserts the status,
// the Proxy-Status error type (and received-status), text/plain, and that the
// upstream password appears in no response and no log line.

import (
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
	up := harness.StartUpstream(t)
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
	up := harness.StartUpstream(t)
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
			return harness.StartUpstream(t, harness.WithMode(harness.ModeReset)).Addr
		}, 502, "connection_terminated", 0},
		{"upstream closes before answering", func(t *testing.T) string {
			return harness.StartUpstream(t, harness.WithMode(harness.ModeCloseBeforeAnswer)).Addr
		}, 502, "connection_terminated", 0},
		{"upstream answers 407", func(t *testing.T) string {
			return harness.StartUpstream(t, harness.WithMode(harness.Mode407)).Addr
		}, 502, "http_request_denied", 407},
		{"upstream wants other credentials", func(t *testing.T) string {
			return harness.StartUpstream(t, harness.WithAuth(upUser, "a-different-password")).Addr
		}, 502, "http_request_denied", 407},
		{"upstream answers 403", func(t *testing.T) string {
			return harness.StartUpstream(t, harness.WithMode(harness.Mode403)).Addr
		}, 502, "destination_unavailable", 403},
		{"upstream answers 503", func(t *testing.T) string {
			return harness.StartUpstream(t, harness.WithMode(harness.Mode5xx)).Addr
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
	up := harness.StartUpstream(t, harness.WithMode(harness.ModeHang))
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
	up := harness.StartUpstream(t)
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	c.SetDeadline(time.Minute)
	c.EchoRoundTrip("after the loop")
}

package itest

import (
	"net/http"
	"testing"

	"github.com/proxyto/proxyto/itest/harness"
)

// TestDialTimeoutSingleUpstream: one upstream given as an IP, whose connect
// hangs (its backlog is full), answers a CONNECT and a plain GET with 504
// connection_timeout after --dial-timeout, not with the response timeout:
// proxyto connects such an upstream from its event loop, and the handshake
// that waits for the connect must not inherit the longer deadline.
func TestDialTimeoutSingleUpstream(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	hole := blackhole(t)
	p := harness.StartProxyto(t, "--dial-timeout", "300ms", "--response-header-timeout", "30s")

	wantProxyError(t, connectStatus(t, p, echo.Addr, "X-Proxy-To: "+hole), 504, "connection_timeout", 0)

	c := harness.Dial(t, p.Addr)
	c.WriteString("GET http://" + echo.Addr + "/ HTTP/1.1\r\nHost: " + echo.Addr + "\r\nX-Proxy-To: " + hole + "\r\n\r\n")
	resp, err := c.ReadResponse(http.MethodGet)
	if err != nil {
		t.Fatalf("GET through a hanging upstream: %v", err)
	}
	wantProxyError(t, resp, 504, "connection_timeout", 0)

	if v := scrapeMetrics(t, p).value(t, "proxyto_upstream_errors_total", map[string]string{"stage": "dial", "type": "connection_timeout"}); v != 2 {
		t.Errorf("dial timeouts counted: %v, want 2", v)
	}
}

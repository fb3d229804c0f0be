package itest

// The PROXY protocol through the real binary (docs/behaviour.md, "PROXY
// protocol"): the carried address in the access log, in per-IP connection
// and rate limits, on both listeners; malformed and missing headers from
// trusted peers; headers from untrusted ones.

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/itest/harness"
)

// ppGet sends header and a plain GET of origin's /small through up on c,
// and returns the response.
func ppGet(t *testing.T, c *harness.Client, header string, origin *harness.WireOrigin, up *harness.WireUpstream) *http.Response {
	t.Helper()
	c.WriteString(header + "GET http://" + origin.Addr + "/small HTTP/1.1\r\nHost: " + origin.Addr + "\r\nX-Proxy-To: " + up.Addr + "\r\n\r\n")
	resp := c.MustResponse(http.MethodGet)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	if resp.StatusCode == 200 && string(body) != string(harness.SmallBody) {
		t.Fatalf("body: %d bytes, want /small's", len(body))
	}
	return resp
}

// accessFrom waits for an access line whose client is addr.
func accessFrom(t *testing.T, p *harness.Proxyto, addr string) {
	t.Helper()
	eventually(t, "an access line from "+addr, func() bool {
		for _, l := range accessLines(p) {
			if l["client"] == addr {
				return true
			}
		}
		return false
	})
}

func TestProxyProtocolTrusted(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--proxy-protocol-from", "127.0.0.0/8,::1")
	for _, tc := range []struct {
		name, header, client string // client "": the peer's own address
	}{
		{"v1 TCP4", harness.ProxyV1("203.0.113.7:4711", "10.0.0.1:8080"), "203.0.113.7:4711"},
		{"v1 TCP6", harness.ProxyV1("[2001:db8::7]:4712", "[2001:db8::1]:8080"), "[2001:db8::7]:4712"},
		{"v2 IPv4", harness.ProxyV2("198.51.100.9:5000", "10.0.0.1:8080"), "198.51.100.9:5000"},
		{"v2 IPv6", harness.ProxyV2("[2001:db8::9]:5001", "[2001:db8::1]:8080"), "[2001:db8::9]:5001"},
		{"v2 LOCAL", harness.ProxyV2Local(), ""},
		{"v1 UNKNOWN", "PROXY UNKNOWN\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := harness.Dial(t, p.Addr)
			if resp := ppGet(t, c, tc.header, origin, up); resp.StatusCode != 200 {
				t.Fatalf("status %s", resp.Status)
			}
			want := tc.client
			if want == "" {
				want = c.Conn.LocalAddr().String()
			}
			accessFrom(t, p, want)
		})
	}
}

func TestProxyProtocolRefused(t *testing.T) {
	p := harness.StartProxyto(t, "--proxy-protocol-from", "127.0.0.1", "--client-header-timeout", "2s")
	for _, tc := range []struct {
		name, send, reason string
	}{
		{"no header", "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", "missing"},
		{"v1 bad address", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "malformed"},
		{"v1 without CRLF", "PROXY TCP4 " + strings.Repeat("9", 200), "too_long"},
		{"v2 bad version", "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c", "malformed"},
		{"half a header", "PROXY TCP4 1.2.3.4", "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := harness.Dial(t, p.Addr)
			c.WriteString(tc.send)
			if got := httpWantClosed(t, c); got != "" {
				t.Errorf("a connection without a valid PROXY header got an answer: %q", got)
			}
			eventually(t, "proxy_protocol_failures{reason="+tc.reason+"}", func() bool {
				return scrapeMetrics(t, p).value(t, "proxyto_proxy_protocol_failures_total", map[string]string{"reason": tc.reason}) >= 1
			})
		})
	}
	if n := len(accessLines(p)); n != 0 {
		t.Errorf("%d access lines for connections that never sent a request", n)
	}
}

func TestProxyProtocolUntrusted(t *testing.T) {
	p := harness.StartProxyto(t, "--proxy-protocol-from", "10.0.0.0/8")
	plain := harness.StartProxyto(t) // no PROXY peers at all
	for _, px := range []*harness.Proxyto{p, plain} {
		for _, h := range []string{harness.ProxyV1("203.0.113.7:4711", "10.0.0.1:8080"), harness.ProxyV2("203.0.113.7:4711", "10.0.0.1:8080")} {
			c := harness.Dial(t, px.Addr)
			c.WriteString(h + "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
			resp := c.MustResponse(http.MethodGet)
			if ps := resp.Header.Get("Proxy-Status"); !strings.Contains(ps, "PROXY protocol header from a peer not trusted") {
				t.Errorf("Proxy-Status %q does not name the untrusted PROXY header", ps)
			}
			wantProxyError(t, resp, 400, "http_request_error", 0)
		}
	}
}

// TestProxyProtocolLimits: per-IP connection and rate limits count the
// carried address: two clients behind one balancer (one peer address) are
// both admitted with one connection per IP, a second connection of one of
// them is refused; with one request per second, each carried address has
// its own bucket.
func TestProxyProtocolLimits(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	dst := "10.0.0.1:8080"

	t.Run("connections per IP", func(t *testing.T) {
		p := harness.StartProxyto(t, "--proxy-protocol-from", "127.0.0.0/8", "--max-conns-per-ip", "1")
		a, b := harness.Dial(t, p.Addr), harness.Dial(t, p.Addr)
		for i, c := range []*harness.Client{a, b} {
			src := []string{"203.0.113.1:1000", "203.0.113.2:1000"}[i]
			if resp := ppGet(t, c, harness.ProxyV1(src, dst), origin, up); resp.StatusCode != 200 {
				t.Fatalf("client %s: %s", src, resp.Status)
			}
		}
		a2 := harness.Dial(t, p.Addr)
		a2.WriteString(harness.ProxyV2("203.0.113.1:2000", dst))
		wantProxyError(t, a2.MustResponse(http.MethodGet), 429, "connection_limit_reached", 0)
		for _, c := range []*harness.Client{a, b} { // both still served
			if resp := ppGet(t, c, "", origin, up); resp.StatusCode != 200 {
				t.Fatalf("kept-alive client: %s", resp.Status)
			}
		}
	})
	t.Run("rate per IP", func(t *testing.T) {
		p := harness.StartProxyto(t, "--proxy-protocol-from", "127.0.0.0/8", "--rate-per-ip", "0.01", "--rate-burst", "1")
		for _, tc := range []struct {
			src    string
			status int
		}{{"203.0.113.1:1000", 200}, {"203.0.113.1:1001", 429}, {"203.0.113.2:1000", 200}} {
			c := harness.Dial(t, p.Addr)
			resp := ppGet(t, c, harness.ProxyV1(tc.src, dst), origin, up)
			if resp.StatusCode != tc.status {
				t.Errorf("request from %s: %s, want %d", tc.src, resp.Status, tc.status)
			}
		}
	})
}

// TestProxyProtocolTLS: on the TLS listener the header comes before the
// handshake; the carried address is the client's in the access log and the
// per-IP limit; a trusted peer without a header fails its handshake.
func TestProxyProtocolTLS(t *testing.T) {
	ca := harness.NewTestCA(t)
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p, _ := tlsProxyto(t, ca, "--proxy-protocol-from", "127.0.0.0/8", "--max-conns-per-ip", "1")
	dial := func(header string) *harness.Client {
		raw, err := net.Dial("tcp", p.TLSAddr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(raw, header); err != nil {
			t.Fatal(err)
		}
		c, _ := harness.ClientTLS(t, raw, ca)
		return c
	}
	a := dial(harness.ProxyV2("192.0.2.10:3000", "10.0.0.1:8443"))
	if resp := ppGet(t, a, "", origin, up); resp.StatusCode != 200 {
		t.Fatalf("status %s", resp.Status)
	}
	accessFrom(t, p, "192.0.2.10:3000")
	b := dial(harness.ProxyV1("192.0.2.11:3000", "10.0.0.1:8443"))
	if resp := ppGet(t, b, "", origin, up); resp.StatusCode != 200 {
		t.Fatalf("a second client behind the same peer: %s", resp.Status)
	}
	a2 := dial(harness.ProxyV1("192.0.2.10:3001", "10.0.0.1:8443"))
	wantProxyError(t, a2.MustResponse(http.MethodGet), 429, "connection_limit_reached", 0)

	// Without a header, the trusted peer's ClientHello is not a header.
	raw := harness.Dial(t, p.TLSAddr)
	raw.WriteString("\x16\x03\x01\x00\x05hello")
	httpWantClosed(t, raw)
	eventually(t, "tls_handshake_failures{reason=proxy_header}", func() bool {
		return scrapeMetrics(t, p).value(t, "proxyto_tls_handshake_failures_total", map[string]string{"reason": "proxy_header"}) == 1
	})
}

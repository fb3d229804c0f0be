package itest

// SOCKS5 upstreams (docs/behaviour.md, "X-Proxy-To", "Talking to the upstream"): X-Proxy-To socks5:// (proxyto resolves the
// target, so the SOCKS request carries an IP) and socks5h:// (the upstream
// resolves it, so it carries the name), RFC 1929 credentials, for CONNECT
// tunnels and for plain HTTP (sent in origin-form over the SOCKS connection).

import (
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// socksCases are the two SOCKS schemes with the address type each must send
// for a target named "localhost".
var socksCases = []struct {
	scheme string
	atyp   byte
	host   string
}{
	{"socks5", harness.Socks5AtypIPv4, "127.0.0.1"},
	{"socks5h", harness.Socks5AtypDomain, "localhost"},
}

// wantSocksRequest checks the one request the SOCKS5 server recorded.
func wantSocksRequest(t *testing.T, s *harness.Socks5Server, atyp byte, host string, port int) {
	t.Helper()
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("SOCKS5 server recorded %d requests, want 1: %+v", len(reqs), reqs)
	}
	r := reqs[0]
	if !slices.Contains(r.Methods, 0x02) {
		t.Errorf("client offered methods %x, want username/password (02) among them", r.Methods)
	}
	if r.User != upUser || r.Pass != upPass || !r.Authed {
		t.Errorf("RFC 1929 credentials %q:%q (accepted %v), want %q and the test password", r.User, "…", r.Authed, upUser)
	}
	if r.Cmd != 1 || r.Atyp != atyp || r.Host != host || r.Port != port {
		t.Errorf("SOCKS request cmd %d atyp %d %s:%d, want cmd 1 atyp %d %s:%d", r.Cmd, r.Atyp, r.Host, r.Port, atyp, host, port)
	}
}

// TestSocks5Connect: a CONNECT to localhost:P through a SOCKS5 upstream
// carries bytes both ways; socks5 sends the resolved IP, socks5h the name.
func TestSocks5Connect(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	p := harness.StartProxyto(t)
	port := harness.Port(t, echo.Addr)
	for _, tc := range socksCases {
		t.Run(tc.scheme, func(t *testing.T) {
			s := harness.StartSocks5(t, true, upUser, upPass)
			c, _ := harness.Tunnel(t, p.Addr, net.JoinHostPort("localhost", strconv.Itoa(port)), tc.scheme+"://"+creds+s.Addr)
			c.SetDeadline(httpDeadline)
			c.EchoRoundTrip("through " + tc.scheme)
			wantSocksRequest(t, s, tc.atyp, tc.host, port)
		})
	}
	noSecretInLogs(t, p)
}

// TestSocks5BadCredentials: credentials the SOCKS5 server rejects → 502
// http_request_denied, password not echoed.
func TestSocks5BadCredentials(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	origin := harness.StartWireOrigin(t)
	s := harness.StartSocks5(t, true, upUser, "a-different-password")
	p := harness.StartProxyto(t)
	resp := connectErr(t, p, harness.ConnectHead(echo.Addr, "socks5://"+creds+s.Addr))
	wantProxyError(t, resp, 502, "http_request_denied", 0)

	_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/socks-denied", "socks5h://"+creds+s.Addr))
	httpWantError(t, r, 502, "http_request_denied", 0)
	noSecretInLogs(t, p)
}

// TestSocks5PlainHTTP: an absolute-form GET through a SOCKS5 upstream
// reaches the origin in origin-form, with Host kept and neither X-Proxy-To
// nor any Proxy-Authorization.
func TestSocks5PlainHTTP(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	p := harness.StartProxyto(t)
	port := harness.Port(t, origin.Addr)
	hostPort := net.JoinHostPort("localhost", strconv.Itoa(port))
	for _, tc := range socksCases {
		t.Run(tc.scheme, func(t *testing.T) {
			s := harness.StartSocks5(t, true, upUser, upPass)
			before := len(origin.Requests())
			_, r := httpRoundTrip(t, p, "GET", httpHead("GET http://"+hostPort+"/p?q=1 HTTP/1.1",
				"Host: "+hostPort, "X-Proxy-To: "+tc.scheme+"://"+creds+s.Addr,
				"Proxy-Authorization: Basic Y2xpZW50OnNlY3JldA==", "X-Client: kept"))
			httpWantOK(t, r, harness.SummaryBody("GET", "/p?q=1", nil))
			wantSocksRequest(t, s, tc.atyp, tc.host, port)
			reqs := origin.WaitRequests(before+1, 30*time.Second)[before:]
			if len(reqs) != 1 {
				t.Fatalf("origin received %d requests, want 1", len(reqs))
			}
			h := reqs[0].Head
			if h.Line != "GET /p?q=1 HTTP/1.1" {
				t.Errorf("request line at the origin %q, want origin-form %q", h.Line, "GET /p?q=1 HTTP/1.1")
			}
			if got := h.Values("Host"); !slices.Equal(got, []string{hostPort}) {
				t.Errorf("Host at the origin %q, want [%q]", got, hostPort)
			}
			if h.Has("X-Proxy-To") || h.Has("Proxy-Authorization") {
				t.Errorf("X-Proxy-To or Proxy-Authorization reached the origin: %q", h.Raw)
			}
			if h.Get("X-Client") != "kept" {
				t.Errorf("client header lost: %q", h.Raw)
			}
		})
	}
	noSecretInLogs(t, p)
}

package itest

// https upstreams (docs/behaviour.md, "X-Proxy-To", "Errors"): X-Proxy-To https://user:pass@localhost:P is
// a TLS connection to the upstream proxy, verified against --upstream-ca (or
// not verified with --insecure-upstream-tls); an unverifiable certificate is
// 502 tls_certificate_error.

import (
	"net/http"
	"testing"

	"github.com/proxyto/proxyto/itest/harness"
)

// TestHTTPSUpstream: CONNECT and plain HTTP through a TLS-wrapped upstream
// proxy, with the test CA given, with verification off, and without either.
func TestHTTPSUpstream(t *testing.T) {
	ca := harness.NewTestCA(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass, TLS: ca})
	echo := harness.StartEchoOrigin(t)
	origin := harness.StartWireOrigin(t)
	xpt := up.URL(creds) // https://itest:…@localhost:P

	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"upstream-ca", []string{"--upstream-ca", ca.CAFile}},
		{"insecure-upstream-tls", []string{"--insecure-upstream-tls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := harness.StartProxyto(t, tc.flags...)
			t.Run("CONNECT", func(t *testing.T) {
				c, _ := harness.Tunnel(t, p.Addr, echo.Addr, xpt)
				c.SetDeadline(httpDeadline)
				c.EchoRoundTrip("through an https upstream")
			})
			t.Run("plain HTTP", func(t *testing.T) {
				before := len(up.Heads())
				_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/over-tls?x=1", xpt))
				httpWantOK(t, r, harness.SummaryBody("GET", "/over-tls?x=1", nil))
				heads := up.Heads()[before:]
				if len(heads) != 1 {
					t.Fatalf("upstream received %d heads, want 1", len(heads))
				}
				if want := "GET " + origin.URL("/over-tls?x=1") + " HTTP/1.1"; heads[0].Head.Line != want {
					t.Errorf("request line %q, want %q", heads[0].Head.Line, want)
				}
				if got := heads[0].Head.Get("Proxy-Authorization"); got != harness.BasicAuth(upUser, upPass) {
					t.Errorf("Proxy-Authorization %q over TLS, want the test credentials", got)
				}
			})
			noSecretInLogs(t, p)
		})
	}

	t.Run("unverified certificate", func(t *testing.T) {
		p := harness.StartProxyto(t)
		before := len(up.Heads())
		resp := connectErr(t, p, harness.ConnectHead(echo.Addr, xpt))
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("CONNECT through an upstream with an untrusted certificate succeeded")
		}
		wantProxyError(t, resp, 502, "tls_certificate_error", 0)

		_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/untrusted", xpt))
		httpWantError(t, r, 502, "tls_certificate_error", 0)
		if n := len(up.Heads()) - before; n != 0 {
			t.Errorf("%d request heads reached the upstream over an unverified TLS connection", n)
		}
		noSecretInLogs(t, p)
	})
}

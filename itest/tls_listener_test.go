package itest

// The TLS client listener through the real binary (docs/behaviour.md, "TLS
// listener"): curl and Go's Transport with an https:// proxy, CONNECT and
// absolute-form; bad handshakes beside a good client; the certificate
// swapped on SIGHUP; the drain; TLS only; loop detection; per-IP limits.

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// tlsProxyto starts proxyto with a TLS listener whose pair ca issued in a
// directory of its own (returned, for IssuePair to replace the pair).
func tlsProxyto(t *testing.T, ca *harness.TestCA, extra ...string) (*harness.Proxyto, string) {
	t.Helper()
	dir := t.TempDir()
	cert, key, _ := ca.IssuePair(t, dir)
	args := append([]string{"--tls-listen", harness.FreeAddr(t), "--tls-cert", cert, "--tls-key", key}, extra...)
	return harness.StartProxyto(t, args...), dir
}

// tlsTunnel opens a CONNECT tunnel to target through xpt over proxyto's TLS
// listener and returns the client, the response and the TLS state.
func tlsTunnel(t *testing.T, p *harness.Proxyto, ca *harness.TestCA, target, xpt string) (*harness.Client, *http.Response, tls.ConnectionState) {
	t.Helper()
	c, st := harness.DialTLS(t, p.TLSAddr, ca)
	c.WriteString(harness.ConnectHead(target, xpt))
	return c, c.MustResponse(http.MethodConnect), st
}

func TestTLSListenerCurl(t *testing.T) {
	ca := harness.NewTestCA(t)
	tlsOrigin := harness.StartTLSOrigin(t)
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p, _ := tlsProxyto(t, ca)
	proxy := []string{"-sS", "-x", "https://" + p.TLSAddr, "--proxy-cacert", ca.CAFile}

	t.Run("CONNECT to an https origin", func(t *testing.T) {
		r := harness.Curl(t, append(proxy, "--proxy-header", "X-Proxy-To: "+creds+up.Addr,
			"--cacert", tlsOrigin.CAFile, "https://"+tlsOrigin.Addr+"/small")...)
		if r.Code != 0 || r.Stdout != string(harness.SmallBody) {
			t.Fatalf("curl exit %d (%d bytes): %s", r.Code, len(r.Stdout), r.Stderr)
		}
	})
	t.Run("absolute-form to an http origin", func(t *testing.T) {
		r := harness.Curl(t, append(proxy, "-H", "X-Proxy-To: "+creds+up.Addr, "-H", "X-Client-Header: kept", "--data-binary", "over TLS",
			"http://"+origin.Addr+"/echo")...)
		if r.Code != 0 {
			t.Fatalf("curl exit %d: %s", r.Code, r.Stderr)
		}
		checkEcho(t, r.Stdout, "POST /echo", "over TLS")
	})
	t.Run("a proxy certificate curl does not trust", func(t *testing.T) {
		r := harness.Curl(t, "-sS", "-x", "https://"+p.TLSAddr, "-H", "X-Proxy-To: "+up.Addr, "http://"+origin.Addr+"/small")
		if r.Code == 0 {
			t.Fatal("curl went through a proxy whose certificate it cannot verify")
		}
	})
	s := scrapeMetrics(t, p)
	if v := s.value(t, "proxyto_tls_handshakes_total", map[string]string{"version": "1.3"}); v < 2 {
		t.Errorf("proxyto_tls_handshakes_total{version=1.3} = %v, want at least 2", v)
	}
	// curl (OpenSSL) aborts a TLS 1.3 handshake it does not trust with an
	// alert crypto/tls reports as "bad record MAC": counted, as "other".
	// (The one "eof" is the harness's probe of the port.)
	eventually(t, "the refused certificate counted", func() bool {
		s := scrapeMetrics(t, p)
		return s.value(t, "proxyto_tls_handshake_failures_total", nil)-s.value(t, "proxyto_tls_handshake_failures_total", map[string]string{"reason": "eof"}) == 1
	})
	noSecretInLogs(t, p)
}

func TestTLSListenerGoTransport(t *testing.T) {
	ca := harness.NewTestCA(t)
	tlsOrigin := harness.StartTLSOrigin(t)
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p, _ := tlsProxyto(t, ca)

	// Go's Transport verifies the proxy and the origin with one pool.
	pool := ca.Pool.Clone()
	pool.AddCert(tlsOrigin.Certificate())
	proxyURL, _ := url.Parse("https://" + p.TLSAddr)
	xpt := creds + up.Addr
	tr := &http.Transport{
		Proxy:              http.ProxyURL(proxyURL),
		ProxyConnectHeader: http.Header{"X-Proxy-To": {xpt}},
		TLSClientConfig:    &tls.Config{RootCAs: pool},
		DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: httpDeadline}
	for _, target := range []string{"https://" + tlsOrigin.Addr + "/small", "http://" + origin.Addr + "/small"} {
		for range 3 { // kept alive: later requests reuse the TLS connection
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("X-Proxy-To", xpt)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", target, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(body) != string(harness.SmallBody) {
				t.Fatalf("GET %s: %d, %d bytes, %v", target, resp.StatusCode, len(body), err)
			}
		}
	}
	// One TLS connection for the CONNECT tunnel, one kept alive for the
	// http requests (net/http's own reuse; proxyto must allow it).
	if v := scrapeMetrics(t, p).value(t, "proxyto_tls_handshakes_total", nil); v != 2 {
		t.Errorf("%v TLS handshakes for two kept-alive connections, want 2", v)
	}
	noSecretInLogs(t, p)
}

// TestTLSListenerBadHandshakes: a client that stalls in its handshake and
// one that speaks plain HTTP to the TLS port are closed (the stalled one at
// the client header timeout), and neither delays a client that handshakes
// meanwhile.
func TestTLSListenerBadHandshakes(t *testing.T) {
	ca := harness.NewTestCA(t)
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p, _ := tlsProxyto(t, ca, "--client-header-timeout", "2s")

	stalled := harness.Dial(t, p.TLSAddr)
	stalled.WriteString("\x16\x03\x01\x00\x40") // a record header, then nothing
	garbage := harness.Dial(t, p.TLSAddr)
	garbage.WriteString("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")

	c, resp, _ := tlsTunnel(t, p, ca, echo.Addr, up.Addr)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT beside bad handshakes: %s", resp.Status)
	}
	c.EchoRoundTrip("unaffected")

	for _, bad := range []*harness.Client{garbage, stalled} {
		bad.SetDeadline(30 * time.Second)
		b, err := io.ReadAll(bad.R)
		if err != nil && !harness.IsReset(err) {
			t.Errorf("a bad handshake was not closed: %v", err)
		}
		if strings.Contains(string(b), "HTTP/1.1") {
			t.Errorf("plain HTTP on the TLS port got an HTTP answer: %q", b)
		}
	}
	c.EchoRoundTrip("still unaffected")
	s := scrapeMetrics(t, p)
	for _, reason := range []string{"not_tls", "timeout"} {
		if v := s.value(t, "proxyto_tls_handshake_failures_total", map[string]string{"reason": reason}); v != 1 {
			t.Errorf("proxyto_tls_handshake_failures_total{reason=%s} = %v, want 1", reason, v)
		}
	}
}

// TestTLSListenerReload: SIGHUP makes new handshakes use the new pair while
// an established connection carries on; a pair that fails to load keeps
// the one in use, and both reloads are counted.
func TestTLSListenerReload(t *testing.T) {
	ca := harness.NewTestCA(t)
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p, dir := tlsProxyto(t, ca)
	serial := func(st tls.ConnectionState) int64 { return st.PeerCertificates[0].SerialNumber.Int64() }

	old, _, st := tlsTunnel(t, p, ca, echo.Addr, up.Addr)
	old.EchoRoundTrip("before the reload")
	first := serial(st)

	_, _, next := ca.IssuePair(t, dir)
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reload counted", func() bool {
		return scrapeMetrics(t, p).value(t, "proxyto_config_reloads_total", map[string]string{"result": "ok"}) == 1
	})
	c, resp, st := tlsTunnel(t, p, ca, echo.Addr, up.Addr)
	if resp.StatusCode != 200 || serial(st) != next {
		t.Fatalf("after the reload: %s with certificate %d, want 200 with %d (was %d)", resp.Status, serial(st), next, first)
	}
	c.EchoRoundTrip("new pair")
	old.EchoRoundTrip("established before the reload")

	// A bad pair: the key file is not a key.
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failed reload counted", func() bool {
		return scrapeMetrics(t, p).value(t, "proxyto_config_reloads_total", map[string]string{"result": "error"}) == 1
	})
	c, resp, st = tlsTunnel(t, p, ca, echo.Addr, up.Addr)
	if resp.StatusCode != 200 || serial(st) != next {
		t.Fatalf("after a failed reload: %s with certificate %d, want 200 with %d", resp.Status, serial(st), next)
	}
	c.EchoRoundTrip("kept pair")
	s := scrapeMetrics(t, p)
	if v := s.value(t, "proxyto_tls_certificate_loads_total", map[string]string{"result": "error"}); v != 1 {
		t.Errorf("proxyto_tls_certificate_loads_total{result=error} = %v, want 1", v)
	}
	eventually(t, "the failed reload logged", func() bool {
		return strings.Contains(p.Output(), "TLS certificate and key failed to load")
	})
}

// TestTLSListenerDrain: SIGTERM closes the TLS listener (new connections are
// refused), /ready turns 503, and an open TLS tunnel carries on until its
// client ends it; then proxyto exits 0.
func TestTLSListenerDrain(t *testing.T) {
	ca := harness.NewTestCA(t)
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p, _ := tlsProxyto(t, ca, "--drain-timeout", "60s")
	c, _, _ := tlsTunnel(t, p, ca, echo.Addr, up.Addr)
	c.EchoRoundTrip("before SIGTERM")
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/ready answers 503 while draining", func() bool {
		code, _, err := adminGet(t, p, "/ready")
		return err == nil && code == http.StatusServiceUnavailable
	})
	eventually(t, "the TLS listener refuses connections", func() bool {
		nc, err := net.DialTimeout("tcp", p.TLSAddr, time.Second)
		if err != nil {
			return true
		}
		nc.Close()
		return false
	})
	c.EchoRoundTrip("after SIGTERM")
	c.CloseWrite()
	if _, err := io.ReadAll(c.R); err != nil {
		t.Errorf("the TLS tunnel did not end cleanly: %v", err)
	}
	c.Close()
	if code := p.Wait(); code != 0 {
		t.Errorf("exit code %d after the drain, want 0", code)
	}
}

// TestTLSListenerOnly: with --listen "" only the TLS listener serves, and an
// X-Proxy-To naming it is a loop (508).
func TestTLSListenerOnly(t *testing.T) {
	ca := harness.NewTestCA(t)
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p, _ := tlsProxyto(t, ca, "--listen", "")
	c, resp, _ := tlsTunnel(t, p, ca, echo.Addr, up.Addr)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	c.EchoRoundTrip("TLS only")
	eventually(t, "the start-up line showing no plain listener", func() bool {
		return strings.Contains(p.Output(), `"listen":""`)
	})

	loop, _ := harness.DialTLS(t, p.TLSAddr, ca)
	loop.WriteString(harness.ConnectHead(echo.Addr, p.TLSAddr))
	wantProxyError(t, loop.MustResponse(http.MethodConnect), 508, "proxy_loop_detected", 0)
}

// TestTLSListenerLimits: the TLS listener's clients count against the same
// per-IP limit as the plain listener's; over it, the answer is a 429 inside
// TLS.
func TestTLSListenerLimits(t *testing.T) {
	ca := harness.NewTestCA(t)
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p, _ := tlsProxyto(t, ca, "--max-conns-per-ip", "1")
	c, resp, _ := tlsTunnel(t, p, ca, echo.Addr, up.Addr)
	if resp.StatusCode != 200 {
		t.Fatalf("first CONNECT: %s", resp.Status)
	}
	second, _ := harness.DialTLS(t, p.TLSAddr, ca)
	wantProxyError(t, second.MustResponse(http.MethodGet), 429, "connection_limit_reached", 0)
	plain := harness.Dial(t, p.Addr)
	wantProxyError(t, plain.MustResponse(http.MethodGet), 429, "connection_limit_reached", 0)
	c.EchoRoundTrip("the admitted one")
}

package itest

// Interop for plain-HTTP forwarding: curl and Go's net/http as clients,
// through proxyto, to WireUpstream, Debian's squid and Debian's tinyproxy as
// upstreams with Basic auth.

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/itest/harness"
)

// interopUpstreams are the upstreams the interop tests run against; each
// start returns host:port, requiring upUser:upPass.
var interopUpstreams = []struct {
	name  string
	start func(t *testing.T) string
}{
	{"TestUpstream", func(t *testing.T) string {
		return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass}).Addr
	}},
	{"squid", func(t *testing.T) string { return harness.StartSquid(t, upUser, upPass).Addr }},
	{"tinyproxy", func(t *testing.T) string { return harness.StartTinyproxy(t, upUser, upPass).Addr }},
}

// TestHTTPInteropCurl: curl with -x proxyto and --proxy-header X-Proxy-To
// fetches and posts plain http:// URLs through each upstream.
func TestHTTPInteropCurl(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	p := harness.StartProxyto(t)
	for _, tc := range interopUpstreams {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.start(t)
			base := []string{"-sS", "-x", "http://" + p.Addr, "--proxy-header", "X-Proxy-To: " + creds + up}

			r := harness.Curl(t, append(base, "http://"+origin.Addr+"/small")...)
			if r.Code != 0 {
				t.Fatalf("curl GET exit %d: %s", r.Code, r.Stderr)
			}
			if r.Stdout != string(harness.SmallBody) {
				t.Fatalf("GET /small: got %d bytes %.100q, want /small's %d", len(r.Stdout), r.Stdout, len(harness.SmallBody))
			}

			r = harness.Curl(t, append(base, "--data-binary", "curl-posted-body", "-H", "X-Client-Header: kept",
				"http://"+origin.Addr+"/echo")...)
			if r.Code != 0 {
				t.Fatalf("curl POST exit %d: %s", r.Code, r.Stderr)
			}
			checkEcho(t, r.Stdout, "POST /echo", "curl-posted-body")

			r = harness.Curl(t, append(base, "-I", "http://"+origin.Addr+"/small")...)
			if r.Code != 0 || !strings.Contains(r.Stdout, " 200") {
				t.Fatalf("curl HEAD exit %d: %s\n%s", r.Code, r.Stderr, r.Stdout)
			}
			noSecretInLogs(t, p)
		})
	}
}

// checkEcho checks an /echo dump: the request line, the body, the client's
// header, and neither X-Proxy-To nor the password.
func checkEcho(t *testing.T, dump, requestLine, body string) {
	t.Helper()
	if !strings.HasPrefix(dump, requestLine+" HTTP/1.1\r\n") {
		t.Errorf("origin saw %.200q, want request line %q", dump, requestLine)
	}
	if !strings.HasSuffix(dump, "\r\n\r\n"+body) {
		t.Errorf("origin's dump %.400q does not end in the body %q", dump, body)
	}
	if !strings.Contains(dump, "X-Client-Header: kept") {
		t.Errorf("client header lost on the way: %.400q", dump)
	}
	if strings.Contains(strings.ToLower(dump), "x-proxy-to") {
		t.Errorf("X-Proxy-To reached the origin: %.400q", dump)
	}
	noSecret(t, "what the origin received", dump)
}

// TestHTTPInteropGoClient: Go's net/http Transport with Proxy set to proxyto
// (a func, since it skips loopback URLs otherwise) and X-Proxy-To in the
// request header (plain http) or ProxyConnectHeader (https, CONNECT): GETs on
// kept-alive connections, a POST, and an https GET through each upstream.
func TestHTTPInteropGoClient(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	tlsOrigin := harness.StartTLSOrigin(t)
	p := harness.StartProxyto(t)
	proxyURL := &url.URL{Scheme: "http", Host: p.Addr}

	for _, tc := range interopUpstreams {
		t.Run(tc.name, func(t *testing.T) {
			xpt := creds + tc.start(t)
			tr := &http.Transport{
				Proxy:              func(*http.Request) (*url.URL, error) { return proxyURL, nil },
				ProxyConnectHeader: http.Header{"X-Proxy-To": {xpt}},
				TLSClientConfig:    &tls.Config{RootCAs: tlsOrigin.Pool},
				DisableCompression: true,
				ForceAttemptHTTP2:  false,
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: httpDeadline}
			do := func(method, u string, body []byte, hdr ...string) (*http.Response, string) {
				t.Helper()
				var rd io.Reader
				if body != nil {
					rd = bytes.NewReader(body)
				}
				req, err := http.NewRequest(method, u, rd)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(u, "https:") {
					req.Header.Set("X-Proxy-To", xpt)
				}
				for i := 0; i+1 < len(hdr); i += 2 {
					req.Header.Set(hdr[i], hdr[i+1])
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, u, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s %s: reading body: %v", method, u, err)
				}
				noSecret(t, "response", string(b))
				return resp, string(b)
			}

			for i := 0; i < 3; i++ {
				resp, body := do("GET", "http://"+origin.Addr+"/small", nil)
				if resp.StatusCode != 200 || body != string(harness.SmallBody) {
					t.Fatalf("GET /small #%d: %s, %d bytes", i+1, resp.Status, len(body))
				}
			}
			resp, body := do("POST", "http://"+origin.Addr+"/echo", []byte("go-posted-body"), "X-Client-Header", "kept")
			if resp.StatusCode != 200 {
				t.Fatalf("POST /echo: %s %q", resp.Status, body)
			}
			checkEcho(t, body, "POST /echo", "go-posted-body")

			resp, body = do("GET", "https://"+tlsOrigin.Addr+"/small", nil)
			if resp.StatusCode != 200 || body != string(harness.SmallBody) {
				t.Fatalf("GET https /small: %s, %d bytes", resp.Status, len(body))
			}
			noSecretInLogs(t, p)
		})
	}
}

// TestHTTPInteropTinyproxyMethodsInALoop: Debian's tinyproxy answers with
// keep-alive-looking heads and closes its connection right after every
// response. PUT, PATCH, POST, OPTIONS and DELETE with bodies on fresh client
// connections, back to back, through it: none may fail (a stale pooled
// connection is noticed, or the request is sent again on a fresh one).
func TestHTTPInteropTinyproxyMethodsInALoop(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	p := harness.StartProxyto(t)
	xpt := creds + harness.StartTinyproxy(t, upUser, upPass).Addr
	proxyURL := &url.URL{Scheme: "http", Host: p.Addr}
	methods := []string{"PUT", "PATCH", "POST", "OPTIONS", "DELETE"}
	const rounds = 300
	for i := range rounds {
		// A new Transport per request: a fresh client connection each time,
		// as scripts and one-shot tools make them.
		tr := &http.Transport{Proxy: func(*http.Request) (*url.URL, error) { return proxyURL, nil }, DisableCompression: true}
		m := methods[i%len(methods)]
		body := strings.Repeat(m+"-body;", 1+i%50)
		req, err := http.NewRequest(m, "http://"+origin.Addr+"/echo", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Proxy-To", xpt)
		req.Header.Set("X-Client-Header", "kept")
		resp, err := (&http.Client{Transport: tr, Timeout: httpDeadline}).Do(req)
		if err != nil {
			t.Fatalf("round %d, %s: %v", i, m, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("round %d, %s: %s %q (Proxy-Status %q), read error %v", i, m, resp.Status, got, resp.Header.Get("Proxy-Status"), err)
		}
		checkEcho(t, string(got), m+" /echo", body)
	}
}

package itest

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// Credentials that tests put in X-Proxy-To; upPass must never come back in a
// response or a log line.
const (
	upUser = "itest"
	upPass = "Sup3r-Secret-Pw"
)

// creds is "itest:Sup3r-Secret-Pw@".
const creds = upUser + ":" + upPass + "@"

// secrets are the forms in which upPass could leak.
var secrets = []string{
	upPass,
	base64.StdEncoding.EncodeToString([]byte(upUser + ":" + upPass)),
}

// wantProxyError checks a response proxyto generated itself (docs/behaviour.md, "Errors"): status,
// a Proxy-Status header naming errType (and received-status=received when
// received > 0), Content-Type text/plain, a body, and no secret anywhere.
func wantProxyError(t *testing.T, resp *http.Response, status int, errType string, received int) {
	t.Helper()
	if resp.StatusCode/100 == 2 {
		// A tunnel opened: its "body" is the tunnel, so do not read it.
		t.Errorf("got %s (the request went through), want %d %s", resp.Status, status, errType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		t.Errorf("reading error body: %v", err)
	}
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d (Proxy-Status %q, body %q)", resp.StatusCode, status, resp.Header.Get("Proxy-Status"), body)
	}
	ps := resp.Header.Values("Proxy-Status")
	psAll := strings.Join(ps, ", ")
	if len(ps) == 0 {
		t.Errorf("no Proxy-Status header")
	} else {
		if !paramRE("error", regexp.QuoteMeta(errType)).MatchString(psAll) {
			t.Errorf("Proxy-Status %q does not say error=%s", psAll, errType)
		}
		if received > 0 && !paramRE("received-status", strconv.Itoa(received)).MatchString(psAll) {
			t.Errorf("Proxy-Status %q does not say received-status=%d", psAll, received)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		t.Errorf("empty error body")
	}
	var head strings.Builder
	resp.Header.Write(&head)
	noSecret(t, "error response", head.String()+"\n"+string(body))
}

// paramRE matches an RFC 9209 parameter name=value as a whole token.
func paramRE(name, value string) *regexp.Regexp {
	return regexp.MustCompile(`(^|[;\s])` + regexp.QuoteMeta(name) + `=` + value + `($|[;,\s])`)
}

// noSecret fails the test if s holds the upstream password in any form.
func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			t.Errorf("%s contains the upstream password (as %q)", what, sec)
		}
	}
}

// noSecretInLogs checks proxyto's output so far (credentials are never logged).
func noSecretInLogs(t *testing.T, p *harness.Proxyto) {
	t.Helper()
	noSecret(t, "proxyto's log output", p.Output())
}

// connectErr sends head to proxyto and returns the response, failing the test
// if none can be read.
func connectErr(t *testing.T, p *harness.Proxyto, head string) *http.Response {
	t.Helper()
	c := harness.Dial(t, p.Addr)
	c.WriteString(head)
	resp, err := c.ReadResponseWithin(http.MethodConnect, harness.HeadDeadline)
	if err != nil {
		t.Fatalf("no response to %q: %v", firstLine(head), err)
	}
	return resp
}

func firstLine(s string) string {
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// tunnelWorks proves proxyto still serves: a fresh tunnel through up to echo
// carries a round trip.
func tunnelWorks(t *testing.T, p *harness.Proxyto, up *harness.WireUpstream, echo *harness.RawOrigin) {
	t.Helper()
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	c.EchoRoundTrip("still alive?")
	c.Close()
}

// Helpers for the plain-HTTP forwarding tests (forward, body, conn, https,
// socks5, interop and the plain-HTTP half of errors).

// httpDeadline bounds one plain-HTTP exchange; generous for a loaded 2-core
// machine, and only reached when proxyto hangs.
const httpDeadline = 60 * time.Second

// httpHead builds a request head: the request line, then the header lines as
// given (each "Name: value", sent verbatim), then the empty line.
func httpHead(requestLine string, lines ...string) string {
	var b strings.Builder
	b.WriteString(requestLine)
	b.WriteString("\r\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// httpGetVia is a head for "GET <absolute URL> HTTP/1.1" with Host and X-Proxy-To.
func httpGetVia(o *harness.WireOrigin, pathQuery, xProxyTo string, lines ...string) string {
	return httpHead("GET "+o.URL(pathQuery)+" HTTP/1.1",
		append([]string{"Host: " + o.Addr, "X-Proxy-To: " + xProxyTo}, lines...)...)
}

// httpDial dials proxyto with httpDeadline on the connection.
func httpDial(t *testing.T, p *harness.Proxyto) *harness.Client {
	t.Helper()
	c := harness.Dial(t, p.Addr)
	c.SetDeadline(httpDeadline)
	return c
}

// httpReadResp reads the final response to a request with method (1xx other than
// 101 are skipped) and fails the test if it cannot.
func httpReadResp(t *testing.T, c *harness.Client, method string) *harness.WireResponse {
	t.Helper()
	r, _, err := harness.ReadFinalWireResponse(c.R, method)
	if err != nil {
		if r != nil {
			t.Fatalf("reading the response to %s (head %q): %v", method, r.Head.Raw, err)
		}
		t.Fatalf("reading the response to %s: %v", method, err)
	}
	noSecret(t, "response", string(r.Head.Raw)+"\n"+string(r.Body))
	return r
}

// httpRoundTrip sends head (and body) on a new connection and reads the final
// response.
func httpRoundTrip(t *testing.T, p *harness.Proxyto, method, head string, body ...string) (*harness.Client, *harness.WireResponse) {
	t.Helper()
	c := httpDial(t, p)
	c.WriteString(head + strings.Join(body, ""))
	return c, httpReadResp(t, c, method)
}

// httpWantOK fails the test unless r is a 200 whose body is want.
func httpWantOK(t *testing.T, r *harness.WireResponse, want string) {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("status line %q, want 200 (body %q)", r.Head.Line, r.Body)
	}
	if string(r.Body) != want {
		t.Fatalf("body %q, want %q", r.Body, want)
	}
}

// httpWantError checks a response proxyto generated itself (docs/behaviour.md, "Errors"), as
// wantProxyError does for net/http responses.
func httpWantError(t *testing.T, r *harness.WireResponse, status int, errType string, received int) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status line %q, want %d (Proxy-Status %q, body %q)", r.Head.Line, status, r.Head.Values("Proxy-Status"), r.Body)
	}
	ps := strings.Join(r.Head.Values("Proxy-Status"), ", ")
	if ps == "" {
		t.Errorf("no Proxy-Status header in %q", r.Head.Raw)
	} else {
		if !paramRE("error", errType).MatchString(ps) {
			t.Errorf("Proxy-Status %q does not say error=%s", ps, errType)
		}
		if received > 0 && !paramRE("received-status", strconv.Itoa(received)).MatchString(ps) {
			t.Errorf("Proxy-Status %q does not say received-status=%d", ps, received)
		}
	}
	if ct := r.Head.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if len(strings.TrimSpace(string(r.Body))) == 0 {
		t.Errorf("empty error body")
	}
	if r.Head.Has("Proxy-Authenticate") && status != 407 {
		t.Errorf("proxyto passed a Proxy-Authenticate to the client: %q", r.Head.Raw)
	}
	noSecret(t, "error response", string(r.Head.Raw)+"\n"+string(r.Body))
}

// httpWantClosed reads c until the peer closes it (EOF or reset) and returns
// what was read; proxyto neither closing nor sending within the deadline
// fails the test.
func httpWantClosed(t *testing.T, c *harness.Client) string {
	t.Helper()
	b, err := io.ReadAll(c.R)
	switch {
	case err == nil, harness.IsReset(err), errors.Is(err, io.ErrUnexpectedEOF):
		return string(b)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("proxyto did not close the connection (read %d bytes: %.200q)", len(b), b)
	default:
		t.Fatalf("reading until close: %v (read %d bytes)", err, len(b))
	}
	return string(b)
}

// isProxytoConnLine reports whether header line l is one proxyto may add on
// its own for the connection it writes on ("Connection: keep-alive" or
// "Connection: close"), which the exact-bytes checks ignore.
func isProxytoConnLine(l string) bool {
	if !strings.EqualFold(harness.FieldName(l), "Connection") {
		return false
	}
	v := strings.ToLower(harness.FieldValue(l))
	return v == "keep-alive" || v == "close"
}

// httpSplitAuth separates the Proxy-Authorization lines of a head from the others
// (ignoring the lines isProxytoConnLine allows).
func httpSplitAuth(fields []string) (auth, rest []string) {
	for _, l := range fields {
		switch {
		case strings.EqualFold(harness.FieldName(l), "Proxy-Authorization"):
			auth = append(auth, l)
		case isProxytoConnLine(l):
		default:
			rest = append(rest, l)
		}
	}
	return auth, rest
}

// httpRSSWatch samples proxyto's RSS every 50 ms until stop is called, which
// returns the largest sample.
func httpRSSWatch(t *testing.T, p *harness.Proxyto) (stop func() int64) {
	t.Helper()
	var (
		mu   sync.Mutex
		peak = p.MustRSS(t)
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if n, err := p.RSS(); err == nil {
					mu.Lock()
					if n > peak {
						peak = n
					}
					mu.Unlock()
				}
			}
		}
	}()
	var once sync.Once
	return func() int64 {
		once.Do(func() { close(done); wg.Wait() })
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

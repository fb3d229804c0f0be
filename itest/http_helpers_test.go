package itest

// Helpers for the plain-HTTP forwarding tests (http_*_test.go).

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

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

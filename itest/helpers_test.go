package itest

import (
	"encoding/base64"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

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
func tunnelWorks(t *testing.T, p *harness.Proxyto, up *harness.TestUpstream, echo *harness.RawOrigin) {
	t.Helper()
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	c.EchoRoundTrip("still alive?")
	c.Close()
}

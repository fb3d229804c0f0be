package itest

// CONNECT through proxyto (docs/behaviour.md): real clients, the exact bytes the
// upstream receives, and what the client gets back.

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// TestConnectCurl runs curl as a real HTTPS client through proxyto, with the
// upstream named in --proxy-header X-Proxy-To, to each kind of upstream with
// Basic auth; the origin's body must arrive intact.
func TestConnectCurl(t *testing.T) {
	origin := harness.StartTLSOrigin(t)
	p := harness.StartProxyto(t)

	for _, tc := range []struct {
		name  string
		start func(t *testing.T) string // returns the upstream's host:port
	}{
		{"TestUpstream", func(t *testing.T) string {
			return harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass}).Addr
		}},
		{"squid", func(t *testing.T) string { return harness.StartSquid(t, upUser, upPass).Addr }},
		{"tinyproxy", func(t *testing.T) string { return harness.StartTinyproxy(t, upUser, upPass).Addr }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.start(t)
			r := harness.Curl(t, "-sS", "--cacert", origin.CAFile,
				"-x", "http://"+p.Addr,
				"--proxy-header", "X-Proxy-To: "+creds+up,
				"https://"+origin.Addr+"/small")
			if r.Code != 0 {
				t.Fatalf("curl exit %d: %s", r.Code, r.Stderr)
			}
			if r.Stdout != string(harness.SmallBody) {
				t.Fatalf("body: got %d bytes, want /small's %d", len(r.Stdout), len(harness.SmallBody))
			}
			noSecretInLogs(t, p)
		})
	}
}

// parseHead splits a raw request head into its request line and header lines,
// failing on anything but CRLF-terminated lines ending in an empty line.
func parseHead(t *testing.T, raw []byte) (requestLine string, headers []string) {
	t.Helper()
	s := string(raw)
	if !strings.HasSuffix(s, "\r\n\r\n") {
		t.Fatalf("upstream head does not end in CRLF CRLF: %q", s)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\r\n\r\n"), "\r\n")
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			t.Fatalf("bare CR or LF in upstream head line %q", l)
		}
	}
	return lines[0], lines[1:]
}

// TestConnectUpstreamReceivesExactHead checks byte for byte what the upstream
// gets for a CONNECT (docs/behaviour.md, "Talking to the upstream"): the request line, one Host, one
// Proxy-Authorization built from the percent-decoded credentials (none when
// X-Proxy-To has none), and then exactly the client's end-to-end headers in
// the client's order and case, duplicates kept; X-Proxy-To, the client's own
// Proxy-Authorization, Proxy-Connection, Connection, the header Connection
// names and Keep-Alive are gone.
func TestConnectUpstreamReceivesExactHead(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)

	endToEnd := []string{
		"User-Agent: itest-agent/1.0 (exact; bytes)",
		"X-Vendor-Session: abc",
		"x-lower-case: Mixed  Value",
		"X-Dup: 1",
		"X-Dup: 2",
		"Accept: */*",
	}
	for _, tc := range []struct {
		name     string
		userinfo string // "" for none, else "user[:pass]@"
		wantAuth string // "" for no Proxy-Authorization, else "user:pass"
		noHost   bool   // the client's CONNECT has no Host header
	}{
		{"percent-decoded password", "alice:p%40ss@", "alice:p@ss", false},
		{"percent-decoded user, colon and percent", "al%2Bice:p%3Ass%25@", "al+ice:p:ss%", false},
		{"empty password", "bob:@", "bob:", false},
		{"user only", "bob@", "bob:", false},
		{"empty user", ":token@", ":token", false},
		{"no credentials", "", "", false},
		{"client sent no Host", "alice:pw@", "alice:pw", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("CONNECT " + echo.Addr + " HTTP/1.1\r\n")
			if !tc.noHost {
				b.WriteString("Host: " + echo.Addr + "\r\n")
			}
			b.WriteString(endToEnd[0] + "\r\n")
			b.WriteString("X-Proxy-To: http://" + tc.userinfo + up.Addr + "\r\n")
			b.WriteString(endToEnd[1] + "\r\n")
			b.WriteString("Proxy-Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n")
			b.WriteString("Proxy-Connection: keep-alive\r\n")
			b.WriteString(endToEnd[2] + "\r\n")
			b.WriteString("Connection: keep-alive, X-Hop-Named\r\n")
			b.WriteString("X-Hop-Named: must not reach the upstream\r\n")
			b.WriteString(endToEnd[3] + "\r\n")
			b.WriteString("Keep-Alive: timeout=5\r\n")
			b.WriteString(endToEnd[4] + "\r\n")
			b.WriteString(endToEnd[5] + "\r\n")
			b.WriteString("\r\n")

			before := len(up.Heads())
			c := harness.Dial(t, p.Addr)
			c.WriteString(b.String())
			resp := c.MustResponse(http.MethodConnect)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT answered %s, want 200", resp.Status)
			}
			c.EchoRoundTrip("ping")

			heads := up.Heads()
			if len(heads) != before+1 {
				t.Fatalf("upstream received %d heads for one CONNECT", len(heads)-before)
			}
			reqLine, headers := parseHead(t, heads[len(heads)-1].Head.Raw)
			if want := "CONNECT " + echo.Addr + " HTTP/1.1"; reqLine != want {
				t.Errorf("request line %q, want %q", reqLine, want)
			}
			var hosts, auths, rest []string
			for _, h := range headers {
				name, _, _ := strings.Cut(h, ":")
				switch {
				case strings.EqualFold(name, "Host"):
					hosts = append(hosts, h)
				case strings.EqualFold(name, "Proxy-Authorization"):
					auths = append(auths, h)
				default:
					rest = append(rest, h)
				}
			}
			if want := []string{"Host: " + echo.Addr}; !slices.Equal(hosts, want) {
				t.Errorf("Host lines %q, want %q", hosts, want)
			}
			var wantAuth []string
			if tc.wantAuth != "" {
				u, pw, _ := strings.Cut(tc.wantAuth, ":")
				wantAuth = []string{"Proxy-Authorization: " + harness.BasicAuth(u, pw)}
			}
			if !slices.Equal(auths, wantAuth) {
				t.Errorf("Proxy-Authorization lines %q, want %q", auths, wantAuth)
			}
			if !slices.Equal(rest, endToEnd) {
				t.Errorf("other header lines at the upstream:\n got %q\nwant %q", rest, endToEnd)
			}
		})
	}
}

// TestConnectResponseHeadersAndEarlyBytes: proxyto's 200 carries the
// upstream's end-to-end response headers (the exit IP), bytes the upstream
// wrote right after its 200 head reach the client first, and bytes the client
// sent right after its CONNECT head — before reading the 200 — reach the
// origin (docs/behaviour.md, "Talking to the upstream").
func TestConnectResponseHeadersAndEarlyBytes(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	const early = "EARLY-BYTES-FROM-UPSTREAM\n"
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{
		ConnectHeaders: []string{harness.ExitIPHeader, "X-Vendor-Trace: trace-42"},
		EarlyBytes:     []byte(early),
	})
	p := harness.StartProxyto(t)

	for _, sameWrite := range []bool{true, false} {
		name := "client early bytes in the head's write"
		if !sameWrite {
			name = "client early bytes in a second write"
		}
		t.Run(name, func(t *testing.T) {
			const clientEarly = "CLIENT-SENT-BEFORE-THE-200\n"
			c := harness.Dial(t, p.Addr)
			head := harness.ConnectHead(echo.Addr, creds+up.Addr)
			if sameWrite {
				c.WriteString(head + clientEarly)
			} else {
				c.WriteString(head)
				c.WriteString(clientEarly)
			}
			resp := c.MustResponse(http.MethodConnect)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT answered %s, want 200", resp.Status)
			}
			if got := resp.Header.Get("X-Exit-IP"); got != "203.0.113.7" {
				t.Errorf("X-Exit-IP %q in proxyto's 200, want the upstream's 203.0.113.7", got)
			}
			if got := resp.Header.Get("X-Vendor-Trace"); got != "trace-42" {
				t.Errorf("X-Vendor-Trace %q in proxyto's 200, want trace-42", got)
			}
			got := string(c.ReadFull(len(early) + len(clientEarly)))
			if want := early + clientEarly; got != want {
				t.Fatalf("first tunnel bytes %q, want %q (upstream's early bytes, then the echo of the client's)", got, want)
			}
			c.EchoRoundTrip("and the tunnel keeps working")
		})
	}
	noSecretInLogs(t, p)
}

// TestConnectFailover: with a failover list whose first upstream refuses the
// connection, proxyto tries the next and the tunnel works (docs/behaviour.md, "X-Proxy-To").
func TestConnectFailover(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)
	refused := harness.ClosedAddr(t)

	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, creds+refused+", "+creds+up.Addr)
	c.EchoRoundTrip("through the second upstream")
	if n := len(up.WaitHeads(1, 30*time.Second)); n != 1 {
		t.Fatalf("second upstream received %d CONNECTs, want 1", n)
	}
	noSecretInLogs(t, p)
}

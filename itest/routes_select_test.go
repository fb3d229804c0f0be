package itest

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// Selecting a route through proxy credentials, for clients that cannot add
// headers to a CONNECT (browsers, Playwright, Selenium, Python requests):
// the username carries -route-NAME and -session-KEY.

// Client credentials of these tests: long enough to search the logs for.
const (
	aliceUser = "alice"
	alicePass = "Al1ce-Pw-90210"
	aliceKey  = "sess-9f8e7d6c" // a session key: never logged either
)

func TestRoutesCredentials(t *testing.T) {
	tlsOrigin := harness.StartTLSOrigin(t)
	origin := harness.StartWireOrigin(t)
	a, b := exitUpstream(t, "a"), exitUpstream(t, "b")
	path := writeRoutes(t, "", "routes:\n  r1: {upstreams: "+upstreamsYAML(a.Addr)+"}\n  r2: {strategy: sticky, upstreams: "+upstreamsYAML(b.Addr)+"}\n")
	p := harness.StartProxyto(t, "--routes", path, "--auth-users", aliceUser+":"+alicePass)
	proxy := func(user, pass string) string { return "http://" + user + ":" + pass + "@" + p.Addr }

	// served checks that exactly one more request reached want and none
	// reached the other upstream.
	counts := func() [2]int64 { return [2]int64{a.Requests(), b.Requests()} }
	served := func(t *testing.T, before [2]int64, want int) {
		t.Helper()
		after := counts()
		for i, name := range []string{"a", "b"} {
			n, w := after[i]-before[i], int64(0)
			if i == want {
				w = 1
			}
			if n != w {
				t.Errorf("upstream %s received %d requests, want %d", name, n, w)
			}
		}
	}

	t.Run("curl CONNECT", func(t *testing.T) {
		before := counts()
		r := harness.Curl(t, "-sS", "--cacert", tlsOrigin.CAFile, "-x", proxy(aliceUser+"-route-r1-session-"+aliceKey, alicePass),
			"https://"+tlsOrigin.Addr+"/small")
		if r.Code != 0 || r.Stdout != string(harness.SmallBody) {
			t.Fatalf("curl exit %d (%d bytes): %s", r.Code, len(r.Stdout), r.Stderr)
		}
		served(t, before, 0)
	})
	t.Run("curl absolute-form", func(t *testing.T) {
		before := counts()
		r := harness.Curl(t, "-sS", "-x", proxy(aliceUser+"-session-"+aliceKey+"-route-r2", alicePass), "http://"+origin.Addr+"/small")
		if r.Code != 0 || r.Stdout != string(harness.SmallBody) {
			t.Fatalf("curl exit %d (%d bytes): %s", r.Code, len(r.Stdout), r.Stderr)
		}
		served(t, before, 1)
	})
	t.Run("curl wrong password", func(t *testing.T) {
		before := counts()
		r := harness.Curl(t, "-sS", "-o", "/dev/null", "-w", "%{http_connect}", "--cacert", tlsOrigin.CAFile,
			"-x", proxy(aliceUser+"-route-r1", "wrong"), "https://"+tlsOrigin.Addr+"/small")
		if r.Stdout != "407" {
			t.Errorf("CONNECT with a wrong password: %q (exit %d), want 407", r.Stdout, r.Code)
		}
		served(t, before, -1)
	})
	t.Run("curl unknown route", func(t *testing.T) {
		r := harness.Curl(t, "-sS", "-o", "/dev/null", "-w", "%{http_connect}", "--cacert", tlsOrigin.CAFile,
			"-x", proxy(aliceUser+"-route-nope", alicePass), "https://"+tlsOrigin.Addr+"/small")
		if r.Stdout != "400" {
			t.Errorf("CONNECT to an unknown route: %q (exit %d), want 400", r.Stdout, r.Code)
		}
	})
	t.Run("Go Transport.Proxy", func(t *testing.T) {
		for _, tc := range []struct {
			user, url string
			want      int
		}{
			{aliceUser + "-route-r2-session-" + aliceKey, "https://" + tlsOrigin.Addr + "/small", 1},
			{aliceUser + "-route-r1", "http://" + origin.Addr + "/small", 0},
		} {
			u, err := url.Parse(proxy(tc.user, alicePass))
			if err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: tlsOrigin.Pool}, ForceAttemptHTTP2: false}
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			before := counts()
			resp, err := client.Get(tc.url)
			if err != nil {
				t.Fatalf("GET %s: %v", tc.url, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if resp.StatusCode != 200 || string(body) != string(harness.SmallBody) {
				t.Fatalf("GET %s: %s, %d bytes", tc.url, resp.Status, len(body))
			}
			served(t, before, tc.want)
		}
	})

	// Neither the client's credentials nor its session key reach an
	// upstream, the log or the metrics.
	for _, u := range []*harness.WireUpstream{a, b} {
		for _, uh := range u.Heads() {
			h := uh.Head.Raw
			if strings.Contains(string(h), aliceUser) || strings.Contains(string(h), harness.BasicAuth(aliceUser, alicePass)[6:12]) {
				t.Errorf("an upstream received the client's credentials:\n%s", h)
			}
		}
	}
	out := p.Output()
	for _, secret := range []string{alicePass, aliceKey} {
		if strings.Contains(out, secret) {
			t.Errorf("proxyto's output holds %q", secret)
		}
	}

	// Accounting: per route and per user, and both in the access line.
	eventually(t, "access lines for every request", func() bool { return len(accessLines(p)) >= 6 })
	s := scrapeMetrics(t, p)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"proxyto_route_requests_total", map[string]string{"route": "r1", "kind": "connect", "result": "ok"}, 1},
		{"proxyto_route_requests_total", map[string]string{"route": "r1", "kind": "http", "result": "ok"}, 1},
		{"proxyto_route_requests_total", map[string]string{"route": "r2", "kind": "connect", "result": "ok"}, 1},
		{"proxyto_route_requests_total", map[string]string{"route": "r2", "kind": "http", "result": "ok"}, 1},
		{"proxyto_user_requests_total", map[string]string{"user": aliceUser, "result": "ok"}, 4},
		// The wrong password and the unknown route: not alice's, and not
		// a route's.
		{"proxyto_user_requests_total", map[string]string{"user": aliceUser, "result": "error"}, 1},
		{"proxyto_route_requests_total", map[string]string{"result": "error"}, 0},
	} {
		if v := s.value(t, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	for _, m := range []string{"proxyto_route_bytes_total", "proxyto_user_bytes_total"} {
		for _, dir := range []string{"up", "down"} {
			if v := s.value(t, m, map[string]string{"direction": dir}); v <= 0 {
				t.Errorf("%s{direction=%s} = %v, want > 0", m, dir, v)
			}
		}
	}
	s.noAddressLabels(t)
	found := false
	for _, l := range accessLines(p) {
		if l["kind"] == "connect" && l["route"] == "r1" && l["user"] == aliceUser && l["status"] == 200.0 {
			found = true
		}
		if l["status"] == 407.0 && l["user"] != nil {
			t.Errorf("a refused client's access line names a user: %v", l)
		}
	}
	if !found {
		t.Errorf("no access line with route r1 and user alice:\n%v", accessLines(p))
	}
}

// TestRoutesCredentialsWithoutAuth: with client authentication off, the
// username only selects; without a routes file, it is ignored as before.
func TestRoutesCredentialsWithoutAuth(t *testing.T) {
	tlsOrigin := harness.StartTLSOrigin(t)
	a, b := exitUpstream(t, "a"), exitUpstream(t, "b")
	path := writeRoutes(t, "", "routes:\n  r1: {upstreams: "+upstreamsYAML(a.Addr)+"}\n  r2: {upstreams: "+upstreamsYAML(b.Addr)+"}\n")
	p := harness.StartProxyto(t, "--routes", path)
	r := harness.Curl(t, "-sS", "--cacert", tlsOrigin.CAFile, "-x", "http://anyone-route-r2:anything@"+p.Addr, "https://"+tlsOrigin.Addr+"/small")
	if r.Code != 0 || r.Stdout != string(harness.SmallBody) {
		t.Fatalf("curl exit %d: %s", r.Code, r.Stderr)
	}
	if a.Requests() != 0 || b.Requests() != 1 {
		t.Errorf("upstreams received %d and %d requests, want 0 and 1", a.Requests(), b.Requests())
	}
	if s := scrapeMetrics(t, p); s.fams["proxyto_user_requests_total"] != nil {
		t.Errorf("proxyto_user_requests_total exported without client authentication")
	}
}

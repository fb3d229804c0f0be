package engine_test

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

// ---------------------------------------------------------------- limits

func checkLimit429(t *testing.T, r *response) {
	t.Helper()
	checkProxyError(t, r, 429, "connection_limit_reached")
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
}

// dialFrom connects to addr from the local address ip.
func dialFrom(t *testing.T, ip, addr string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", ip, err)
	}
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { _ = c.Close() })
	rx := new(atomic.Int64)
	return &client{t: t, c: c.(*net.TCPConn), br: newBufReader(c, rx), rx: rx}
}

func TestInprocMaxConns(t *testing.T) {
	te := startEngine(t, engine.Config{MaxConns: 2})
	c1, c2 := dialClient(t, te.addr), dialClient(t, te.addr)
	eventually(t, "two clients opened", func() bool { return te.rec.snapshot().clientsOpened == 2 })
	c3 := dialClient(t, te.addr)
	checkLimit429(t, c3.mustRead("GET"))
	if n := te.rec.snapshot().limits[engine.LimitConns]; n != 1 {
		t.Errorf("LimitRejected(conns) %d, want 1", n)
	}
	_ = c1.c.Close()
	eventually(t, "first client closed", func() bool { return te.rec.snapshot().clientsClosed == 1 })
	c4 := dialClient(t, te.addr)
	// Admitted again: a request without X-Proxy-To gets proxyto's 400.
	checkProxyError(t, c4.roundTrip("GET", get("example.com", "/", "")), 400, "http_request_error")
	_ = c2
}

func TestInprocMaxConnsPerIP(t *testing.T) {
	te := startEngine(t, engine.Config{MaxConnsPerIP: 1})
	_ = dialClient(t, te.addr)
	eventually(t, "first client opened", func() bool { return te.rec.snapshot().clientsOpened == 1 })
	c2 := dialClient(t, te.addr)
	checkLimit429(t, c2.mustRead("GET"))
	if n := te.rec.snapshot().limits[engine.LimitConnsPerIP]; n != 1 {
		t.Errorf("LimitRejected(conns_per_ip) %d, want 1", n)
	}
	// Another client address is not affected.
	c3 := dialFrom(t, "127.0.0.2", te.addr)
	checkProxyError(t, c3.roundTrip("GET", get("example.com", "/", "")), 400, "http_request_error")
}

func TestInprocRatePerIP(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)

	t.Run("two connections at once", func(t *testing.T) {
		// RatePerIP 1, RateBurst 1: of two requests sent together one passes
		// the rate check (and fails later for lack of X-Proxy-To), one is 429.
		te := startEngine(t, engine.Config{RatePerIP: 1, RateBurst: 1})
		c1, c2 := dialClient(t, te.addr), dialClient(t, te.addr)
		eventually(t, "two clients opened", func() bool { return te.rec.snapshot().clientsOpened == 2 })
		var wg sync.WaitGroup
		var got [2]*response
		var errs [2]error
		for i, c := range []*client{c1, c2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.c.Write([]byte(get(oh, "/echo", ""))); err != nil {
					errs[i] = err
					return
				}
				got[i], errs[i] = c.read("GET")
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		codes := map[int]int{}
		for _, r := range got {
			codes[r.StatusCode]++
			if r.StatusCode == 429 {
				checkLimit429(t, r)
			}
		}
		if codes[429] != 1 || codes[400] != 1 {
			t.Fatalf("statuses %v, want one 400 and one 429", codes)
		}
		if n := te.rec.snapshot().limits[engine.LimitRate]; n != 1 {
			t.Errorf("LimitRejected(rate) %d, want 1", n)
		}
	})

	t.Run("keep-alive", func(t *testing.T) {
		// One request per 100 s: the second request on the connection is 429.
		up := startProxy(t, nil)
		te := startEngine(t, engine.Config{RatePerIP: 0.01, RateBurst: 1})
		c := dialClient(t, te.addr)
		if r := c.roundTrip("GET", get(oh, "/echo", up.addr)); r.StatusCode != 200 {
			t.Fatalf("first request: %d", r.StatusCode)
		}
		checkLimit429(t, c.roundTrip("GET", get(oh, "/echo", up.addr)))
		if up.Requests() != 1 {
			t.Errorf("upstream saw %d requests, want 1", up.Requests())
		}
	})

	t.Run("reconnect", func(t *testing.T) {
		// The rate is per client IP, not per connection: a client that
		// closes and reconnects must not get a fresh bucket.
		te := startEngine(t, engine.Config{RatePerIP: 0.01, RateBurst: 1})
		c1 := dialClient(t, te.addr)
		checkProxyError(t, c1.roundTrip("GET", get(oh, "/echo", "")), 400, "http_request_error")
		_ = c1.c.Close()
		eventually(t, "first client closed", func() bool { return te.rec.snapshot().clientsClosed == 1 })
		c2 := dialClient(t, te.addr)
		r := c2.roundTrip("GET", get(oh, "/echo", ""))
		if r.StatusCode != 429 {
			t.Fatalf("second request from the same IP within the rate window after a reconnect: status %d, want 429 "+
				"(limits.go release deletes the per-IP bucket with the last connection)", r.StatusCode)
		}
	})
}

// ---------------------------------------------------------------- auth

// fakeAuth knows alice:good (ok) and alice:bad (refused) at once; anything
// else goes to Verify, which accepts bob:slow-good. Verify can be held.
type fakeAuth struct {
	verifies atomic.Int64
	hold     chan struct{} // non-nil: Verify waits for it to close
	entered  chan struct{} // receives when Verify starts (buffered)
}

func (a *fakeAuth) CachedUser(user, pass []byte) (ok, known bool) {
	switch string(user) + ":" + string(pass) {
	case "alice:good":
		return true, true
	case "alice:bad":
		return false, true
	}
	return false, false
}

// UserID knows alice (0) and bob (1).
func (a *fakeAuth) UserID(user []byte) int {
	switch string(user) {
	case "alice":
		return 0
	case "bob":
		return 1
	}
	return -1
}

func (a *fakeAuth) VerifyUser(user, pass []byte) bool {
	a.verifies.Add(1)
	if a.entered != nil {
		select {
		case a.entered <- struct{}{}:
		default:
		}
	}
	if a.hold != nil {
		<-a.hold
	}
	return string(user) == "bob" && string(pass) == "slow-good"
}

func checkAuth407(t *testing.T, r *response) {
	t.Helper()
	checkProxyError(t, r, 407, "http_request_denied")
	if got := r.Header.Get("Proxy-Authenticate"); got != `Basic realm="proxyto"` {
		t.Errorf("Proxy-Authenticate %q", got)
	}
}

func TestInprocAuth(t *testing.T) {
	echo := startEcho(t)
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	cases := []struct {
		name     string
		authz    string // "" sends none
		ok       bool
		verifies int64
	}{
		{"missing", "", false, 0},
		{"known bad", basic("alice", "bad"), false, 0},
		{"not basic", "Bearer abc", false, 0},
		{"unknown refused by Verify", basic("bob", "wrong"), false, 1},
		{"known good", basic("alice", "good"), true, 0},
		{"unknown accepted by Verify", basic("bob", "slow-good"), true, 1},
	}
	a := &fakeAuth{}
	// No pooling here: TestInprocAuthPooledUpstream covers pooled upstreams.
	te := startEngine(t, engine.Config{Auth: a, PoolMaxIdlePerKey: -1})
	for _, tc := range cases {
		for _, method := range []string{"GET", "CONNECT"} {
			t.Run(tc.name+"/"+method, func(t *testing.T) {
				verifies := a.verifies.Load()
				var extra []string
				if tc.authz != "" {
					extra = append(extra, "Proxy-Authorization: "+tc.authz+"\r\n")
				}
				c := dialClient(t, te.addr)
				before := len(up.seenRequests())
				var r *response
				if method == "GET" {
					r = c.roundTrip("GET", get(oh, "/echo", up.addr, extra...))
				} else {
					r = c.roundTrip("CONNECT", connectReq(echo, up.addr, extra...))
				}
				if !tc.ok {
					checkAuth407(t, r)
					if n := len(up.seenRequests()) - before; n != 0 {
						t.Errorf("upstream saw %d requests from an unauthenticated client", n)
					}
				} else {
					if r.StatusCode != 200 {
						t.Fatalf("status %d (%s)", r.StatusCode, r.Header.Get("Proxy-Status"))
					}
					seen := up.seenRequests()
					if len(seen) != before+1 {
						t.Fatalf("upstream saw %d requests", len(seen)-before)
					}
					if pa := seen[len(seen)-1].header.Get("Proxy-Authorization"); pa != "" {
						t.Errorf("proxyto's own Proxy-Authorization reached the upstream: %q", pa)
					}
					if method == "CONNECT" {
						c.echoCheck("authenticated")
					}
				}
				if got := a.verifies.Load() - verifies; got != tc.verifies {
					t.Errorf("Verify called %d times, want %d", got, tc.verifies)
				}
			})
		}
	}
}

// TestInprocAuthVerifyOffLoop: a Verify that blocks must not hold up other
// clients on the same (single) loop.
func TestInprocAuthVerifyOffLoop(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	a := &fakeAuth{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	te := startEngine(t, engine.Config{Auth: a, Loops: 1})
	slow := dialClient(t, te.addr)
	slow.write(get(oh, "/echo", up.addr, "Proxy-Authorization: "+basic("bob", "slow-good")+"\r\n"))
	select {
	case <-a.entered:
	case <-time.After(waitLong):
		close(a.hold)
		t.Fatal("Verify was never called")
	}
	fast := dialClient(t, te.addr)
	r := fast.roundTrip("GET", get(oh, "/echo", up.addr, "Proxy-Authorization: "+basic("alice", "good")+"\r\n"))
	close(a.hold)
	if r.StatusCode != 200 {
		t.Fatalf("client with cached credentials while Verify blocks: %d", r.StatusCode)
	}
	if r := slow.mustRead("GET"); r.StatusCode != 200 {
		t.Fatalf("verified client: %d", r.StatusCode)
	}
}

// TestInprocAuthPooledUpstream: credentials only Verify can judge must be
// verified even when a pooled upstream connection lets the request skip the
// dial.
func TestInprocAuthPooledUpstream(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	a := &fakeAuth{}
	te := startEngine(t, engine.Config{Auth: a, Loops: 1})
	c := dialClient(t, te.addr)
	if r := c.roundTrip("GET", get(oh, "/echo", up.addr, "Proxy-Authorization: "+basic("alice", "good")+"\r\n")); r.StatusCode != 200 {
		t.Fatalf("first request: %d", r.StatusCode)
	}
	// Same upstream, so the pool has a connection; credentials unknown to
	// Cached and refused by Verify.
	r := c.roundTrip("GET", get(oh, "/echo", up.addr, "Proxy-Authorization: "+basic("mallory", "guess")+"\r\n"))
	if r.StatusCode != 407 {
		t.Errorf("unverified credentials on a pooled upstream: status %d, want 407 (Verify called %d times, upstream saw %d requests)",
			r.StatusCode, a.verifies.Load(), up.Requests())
	}
}

// ---------------------------------------------------------------- routing and upstream rules

func TestInprocDefaultUpstream(t *testing.T) {
	echo := startEcho(t)
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, map[string]string{"d": "pw"})
	te := startEngine(t, engine.Config{DefaultUpstream: "d:pw@" + up.addr})
	c := dialClient(t, te.addr)
	r := c.roundTrip("GET", get(oh, "/echo", ""))
	if r.StatusCode != 200 || string(r.body) != "uri=/echo" {
		t.Fatalf("GET via the default upstream: %d %q", r.StatusCode, r.body)
	}
	tc := openTunnel(t, te.addr, echo, "")
	tc.echoCheck("via default")
	if up.Requests() != 2 {
		t.Errorf("default upstream saw %d requests, want 2", up.Requests())
	}
	// X-Proxy-To still wins over the default.
	other := startProxy(t, nil)
	if r := c.roundTrip("GET", get(oh, "/echo", other.addr)); r.StatusCode != 200 || other.Requests() != 1 {
		t.Fatalf("explicit X-Proxy-To: %d, other upstream saw %d", r.StatusCode, other.Requests())
	}
}

func TestInprocLoopDetection(t *testing.T) {
	echo := startEcho(t)
	var adminHits atomic.Int64
	adminLn := startTCP(t, func(c *net.TCPConn) { adminHits.Add(1) })
	te := startEngine(t, engine.Config{SelfAddrs: []string{adminLn}})
	_, port, _ := net.SplitHostPort(te.addr)
	for _, xpt := range []string{te.addr, "localhost:" + port, "user:pw@" + te.addr, adminLn} {
		for _, method := range []string{"GET", "CONNECT"} {
			t.Run(xpt+"/"+method, func(t *testing.T) {
				c := dialClient(t, te.addr)
				var r *response
				if method == "GET" {
					r = c.roundTrip("GET", get("example.com", "/", xpt))
				} else {
					r = c.roundTrip("CONNECT", connectReq(echo, xpt))
				}
				checkProxyError(t, r, 508, "proxy_loop_detected")
				if strings.Contains(string(r.body), "pw") {
					t.Errorf("body holds credentials: %q", r.body)
				}
			})
		}
	}
	if adminHits.Load() != 0 {
		t.Errorf("the SelfAddrs listener was dialed %d times", adminHits.Load())
	}
}

func TestInprocUpstreamCheck(t *testing.T) {
	echo := startEcho(t)
	oh := originHost(startOrigin(t))
	up := startProxy(t, nil)
	_, port, _ := net.SplitHostPort(up.addr)
	var calls atomic.Int64
	check := func(host string, addr netip.Addr) error {
		calls.Add(1)
		switch {
		case host == "127.0.0.1":
			return &proxystatus.Error{Type: proxystatus.DestinationIPProhibited, Detail: "denied by test rule"}
		case addr.IsLinkLocalUnicast():
			return &proxystatus.Error{Type: proxystatus.DestinationIPProhibited, Detail: "rule saw " + addr.String()}
		}
		return nil
	}
	cases := []struct {
		name           string
		allowLinkLocal bool
		xpt            string
		status         int
		typ            string
		detail         string // substring of the body
	}{
		{"rule denies", false, up.addr, 403, "destination_ip_prohibited", "denied by test rule"},
		{"rule allows", false, "localhost:" + port, 200, "", ""},
		{"link-local refused", false, "169.254.1.1:3128", 403, "destination_ip_prohibited", "link-local"},
		{"metadata refused", false, "169.254.169.254:80", 403, "destination_ip_prohibited", ""},
		{"link-local allowed reaches the rule", true, "169.254.1.1:3128", 403, "destination_ip_prohibited", "rule saw 169.254.1.1"},
	}
	engines := map[bool]*testEngine{}
	for _, tc := range cases {
		te := engines[tc.allowLinkLocal]
		if te == nil {
			te = startEngine(t, engine.Config{UpstreamCheck: check, AllowLinkLocal: tc.allowLinkLocal, DialTimeout: 2 * time.Second})
			engines[tc.allowLinkLocal] = te
		}
		for _, method := range []string{"GET", "CONNECT"} {
			t.Run(tc.name+"/"+method, func(t *testing.T) {
				c := dialClient(t, te.addr)
				var r *response
				if method == "GET" {
					r = c.roundTrip("GET", get(oh, "/echo", tc.xpt))
				} else {
					r = c.roundTrip("CONNECT", connectReq(echo, tc.xpt))
				}
				if tc.status == 200 {
					if r.StatusCode != 200 {
						t.Fatalf("status %d (%s)", r.StatusCode, r.Header.Get("Proxy-Status"))
					}
					return
				}
				checkProxyError(t, r, tc.status, tc.typ)
				if !strings.Contains(string(r.body), tc.detail) {
					t.Errorf("body %q, want it to mention %q", r.body, tc.detail)
				}
			})
		}
	}
	if calls.Load() == 0 {
		t.Error("UpstreamCheck never called")
	}
}

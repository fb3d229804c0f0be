package engine_test

import (
	"net"
	"testing"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/routes"
)

// Routes in process: what reaches the upstream, what the Observer hears.

// holderFor stores a routes file in a new holder.
func holderFor(t *testing.T, tr *health.Tracker, yaml string) *routes.Holder {
	t.Helper()
	h := routes.NewHolder(tr)
	tab, err := routes.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Store(tab); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestInprocRouteSelection: a GET through @r with X-Proxy-Session, and a
// CONNECT selected by the username of an authenticated client: proxyto's
// own headers never reach the upstream, and the record and the relayed
// bytes carry the route and the user.
func TestInprocRouteSelection(t *testing.T) {
	echo := startEcho(t)
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	h := holderFor(t, nil, "routes:\n  other: {upstreams: [\"127.0.0.1:1\"]}\n  r: {strategy: sticky, upstreams: [\""+up.addr+"\"]}\n")
	te := startEngine(t, engine.Config{Routes: h, Auth: &fakeAuth{}})

	c := dialClient(t, te.addr)
	r := c.roundTrip("GET", get(oh, "/echo", "@r", "X-Proxy-Session: s1\r\n", "Proxy-Authorization: "+basic("alice", "good")+"\r\n"))
	if r.StatusCode != 200 {
		t.Fatalf("GET via @r: %d %s", r.StatusCode, r.Header.Get("Proxy-Status"))
	}
	_ = c.c.Close()
	c = dialClient(t, te.addr)
	r = c.roundTrip("CONNECT", connectReq(echo, "", "Proxy-Authorization: "+basic("alice-route-r-session-s2", "good")+"\r\n"))
	if r.StatusCode != 200 {
		t.Fatalf("CONNECT via the username: %d %s", r.StatusCode, r.Header.Get("Proxy-Status"))
	}
	c.echoCheck("through r")
	_ = c.c.Close()

	for _, s := range up.seenRequests() {
		for _, name := range []string{"X-Proxy-Session", "Proxy-Authorization", "X-Proxy-To"} {
			if v := s.header.Get(name); v != "" {
				t.Errorf("%s %s reached the upstream with %s: %q", s.method, s.uri, name, v)
			}
		}
	}
	if n := len(up.seenRequests()); n != 2 {
		t.Errorf("upstream saw %d requests, want 2", n)
	}
	rid := h.Table().Routes()[1].ID() // "r", sorted after "other"
	st := te.rec.settled(t)
	if len(st.records) != 2 {
		t.Fatalf("%d records, want 2", len(st.records))
	}
	for _, rc := range st.records {
		if rc.route != rid || rc.user != 0 {
			t.Errorf("%s record: route %d user %d, want %d and 0 (alice)", rc.method, rc.route, rc.user, rid)
		}
	}
	if st.relayedBy[[2]int{rid, 0}] == 0 || len(st.relayedBy) != 1 {
		t.Errorf("relayed bytes by (route, user): %v, want all for (%d, 0)", st.relayedBy, rid)
	}
}

// TestInprocEjectionObserved: an X-Proxy-To upstream that refuses is
// ejected after EjectAfter failures, and the Observer hears of it once,
// for no route.
func TestInprocEjectionObserved(t *testing.T) {
	echo := startEcho(t)
	up := startProxy(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	_ = ln.Close()
	tr := health.New(health.Config{EjectAfter: 2})
	te := startEngine(t, engine.Config{Health: tr})
	for range 4 {
		c := openTunnel(t, te.addr, echo, refused+", "+up.addr)
		c.echoCheck("x")
		_ = c.c.Close()
	}
	st := te.rec.settled(t)
	if st.ejected[-1] != 1 || len(st.ejected) != 1 {
		t.Errorf("ejections observed: %v, want one for no route", st.ejected)
	}
	if n := st.dials; n != 6 {
		t.Errorf("%d dials, want 6 (2 refused, then the ejected upstream skipped)", n)
	}
}

// TestNewHealthMustBeRoutesTracker: reports to a tracker other than the
// routes holder's would never eject a route entry, so New refuses it.
func TestNewHealthMustBeRoutesTracker(t *testing.T) {
	tr := health.New(health.Config{})
	h := holderFor(t, tr, "routes:\n  r: {upstreams: [\"127.0.0.1:1\"]}\n")
	if _, err := engine.New(engine.Config{Routes: h, Health: health.New(health.Config{})}); err == nil {
		t.Error("New accepted a Health tracker other than the routes holder's")
	}
	if _, err := engine.New(engine.Config{Routes: h, Health: tr}); err != nil {
		t.Errorf("New with the holder's own tracker: %v", err)
	}
}

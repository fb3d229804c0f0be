package main

import (
	"testing"
	"time"
)

// startTestServers runs an origin (echo and http listeners) and an upstream
// in this process, as the child roles do.
func startTestServers(t *testing.T) (origin, upstream *server, echoAddr, httpAddr, upAddr string) {
	t.Helper()
	origin = &server{spec: serverSpec{MaxHold: time.Minute, Listen: []listenSpec{
		{Label: "echo", IP: "127.0.0.1", Kind: "echo"},
		{Label: "http", IP: "127.0.0.1", Kind: "http"},
	}}}
	origin.control(request{Op: "rearm"})
	oa, err := origin.listenAll(serveOrigin)
	if err != nil {
		t.Fatal(err)
	}
	upstream = &server{spec: serverSpec{Listen: []listenSpec{{Label: "up", IP: "127.0.0.1", Kind: "proxy"}}}}
	ua, err := upstream.listenAll(serveUpstream)
	if err != nil {
		t.Fatal(err)
	}
	return origin, upstream, oa["echo"][0], oa["http"][0], ua["up"][0]
}

// waitOpen waits until s has n connections open, or fails.
func waitOpen(t *testing.T, s *server, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.control(request{Op: "stats"}).Open != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want %d", s.control(request{Op: "stats"}).Open, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLoadgenAgainstTestUpstream runs the load generator's three steps
// straight against the test's upstream proxy (it serves CONNECT and
// absolute-form requests as proxyto's upstream would): tunnels echo, held
// requests are answered only on release, each with its own number, and
// closing leaves nothing open anywhere.
func TestLoadgenAgainstTestUpstream(t *testing.T) {
	origin, upstream, echoAddr, httpAddr, upAddr := startTestServers(t)
	const n = 50
	for _, tc := range []struct {
		kind, origin string
	}{
		{"connect", echoAddr},
		{"http", httpAddr},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			lg := &loadgen{}
			open := lg.handle(request{
				Op: "open", Kind: tc.kind, Proxy: upAddr,
				Srcs: []string{"127.0.0.1"}, Upstreams: []string{upAddr}, Origins: []string{tc.origin},
				First: 0, Step: 1, Count: n, Rate: 10000, Timeout: 10 * time.Second,
			})
			if open.OK != n || len(open.Errors) > 0 {
				t.Fatalf("open: %+v", open)
			}
			if tc.kind == "http" {
				deadline := time.Now().Add(30 * time.Second)
				for origin.control(request{Op: "stats"}).Held != n {
					if time.Now().After(deadline) {
						t.Fatalf("origin holds %d requests, want %d", origin.control(request{Op: "stats"}).Held, n)
					}
					time.Sleep(10 * time.Millisecond)
				}
				origin.control(request{Op: "release"})
				origin.control(request{Op: "release"}) // a second one is harmless
			}
			if v := lg.handle(request{Op: "verify"}); v.OK != n || len(v.Errors) > 0 {
				t.Fatalf("verify: %+v", v)
			}
			if c := lg.handle(request{Op: "close"}); c.OK != n {
				t.Fatalf("close: %+v", c)
			}
			origin.control(request{Op: "rearm"})
			waitOpen(t, upstream, 0)
			waitOpen(t, origin, 0)
		})
	}
}

func TestHeadHelpers(t *testing.T) {
	for _, tc := range []struct {
		target, hostPort, path string
		ok                     bool
	}{
		{"http://127.1.3.1:4000/hold/12", "127.1.3.1:4000", "/hold/12", true},
		{"http://127.1.3.1:4000", "127.1.3.1:4000", "/", true},
		{"127.1.3.1:4000", "", "", false},
		{"/fast", "", "", false},
	} {
		hp, path, ok := absoluteForm([]byte(tc.target))
		if ok != tc.ok || string(hp) != tc.hostPort || string(path) != tc.path {
			t.Errorf("absoluteForm(%q) = %q, %q, %v", tc.target, hp, path, ok)
		}
	}
	for _, tc := range []struct {
		head   string
		status int
		length int
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, 5},
		{"HTTP/1.1 429 Too Many Requests\r\ncontent-length:  0\r\n\r\n", 429, 0},
		{"HTTP/1.0 502 Bad Gateway\r\n\r\n", 502, -1},
		{"SSH-2.0-x\r\n\r\n", 0, -1},
	} {
		if s, l := statusCode([]byte(tc.head)), contentLength([]byte(tc.head)); s != tc.status || l != tc.length {
			t.Errorf("%q: status %d length %d, want %d %d", tc.head, s, l, tc.status, tc.length)
		}
	}
}

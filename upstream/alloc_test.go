//go:build !race

package upstream_test

import (
	"net/netip"
	"testing"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/upstream"
)

func TestAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	auth, user, pass := []byte("www.example.com:443"), []byte("alice"), []byte("secret")
	reply := []byte{5, 0, 0, 1, 10, 1, 2, 3, 0x1f, 0x90}
	rbuf := make([]byte, 0, 1024)
	e2e := []byte("User-Agent: t\r\n")
	connectReply := []byte("HTTP/1.1 200 Connection established\r\nX-Exit-IP: 203.0.113.7\r\n\r\n")
	var resp httpparse.Response
	var up httpparse.Upstream
	up.HasAuth, up.User, up.Pass = true, user, pass
	tests := []struct {
		name       string
		run        func()
		wantAllocs float64
	}{
		{"AppendConnectLine", func() { buf = upstream.AppendConnectLine(buf[:0], auth, nil, nil, false) }, 0},
		{"AppendConnectLine with auth", func() { buf = upstream.AppendConnectLine(buf[:0], auth, user, pass, true) }, 0},
		{"Socks5 exchange, domain, auth, tunnel", func() {
			s := upstream.Socks5{HasAuth: true, User: user, Pass: pass, Host: []byte("example.com"), Port: 443, Tunnel: true}
			buf, _, _ = s.Start(buf[:0])
			st, _ := s.Feed([]byte{5, 2}, buf[:0], nil)
			st, _ = s.Feed([]byte{1, 0}, st.Send[:0], nil)
			if st, err := s.Feed(reply, st.Send[:0], rbuf[:0]); !st.Done || err != nil || len(st.Reply) == 0 {
				t.Fatal(st.Done, err)
			}
		}, 0},
		{"Socks5 exchange, IPv6", func() {
			s := upstream.Socks5{Addr: netip.IPv6Loopback(), Port: 443}
			buf, _, _ = s.Start(buf[:0])
			st, _ := s.Feed([]byte{5, 0}, buf[:0], nil)
			_, _ = s.Feed(reply, st.Send[:0], nil)
		}, 0},
		{"Socks5 partial reply", func() {
			var s upstream.Socks5
			_, _ = s.Feed([]byte{5}, buf[:0], nil)
		}, 0},
		{"Connect exchange", func() {
			c := upstream.Connect{Upstream: &up, Authority: auth, E2E: e2e, Resp: &resp, MaxHead: 4096}
			buf, _, _ = c.Start(buf[:0])
			if st, err := c.Feed(connectReply, buf[:0], rbuf[:0]); !st.Done || err != nil {
				t.Fatal(st.Done, err)
			}
		}, 0},
		{"Forward head", func() {
			f := upstream.Forward{Upstream: &up, Method: []byte("GET"), URL: []byte("http://e.test/x"), Path: []byte("/x"), Minor: 1, E2E: e2e}
			buf, _, _ = f.Start(buf[:0])
		}, 0},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.run); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs, want %v", tt.name, got, tt.wantAllocs)
		}
	}
}

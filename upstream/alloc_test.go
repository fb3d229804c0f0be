//go:build !race

package upstream_test

import (
	"net/netip"
	"testing"

	"github.com/proxyto/proxyto/upstream"
)

func TestAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	auth, user, pass := []byte("www.example.com:443"), []byte("alice"), []byte("secret")
	reply := []byte{5, 0, 0, 1, 10, 1, 2, 3, 0x1f, 0x90}
	tests := []struct {
		name       string
		run        func()
		wantAllocs float64
	}{
		{"AppendConnectLine", func() { buf = upstream.AppendConnectLine(buf[:0], auth, nil, nil, false) }, 0},
		{"AppendConnectLine with auth", func() { buf = upstream.AppendConnectLine(buf[:0], auth, user, pass, true) }, 0},
		{"Socks5 exchange, domain, auth", func() {
			s := upstream.Socks5{HasAuth: true, User: user, Pass: pass, Host: []byte("example.com"), Port: 443}
			buf, _ = s.Start(buf[:0])
			_, buf, _, _ = s.Feed([]byte{5, 2}, buf[:0])
			_, buf, _, _ = s.Feed([]byte{1, 0}, buf[:0])
			if _, _, done, err := s.Feed(reply, buf[:0]); !done || err != nil {
				t.Fatal(done, err)
			}
		}, 0},
		{"Socks5 exchange, IPv6", func() {
			s := upstream.Socks5{Addr: netip.IPv6Loopback(), Port: 443}
			buf, _ = s.Start(buf[:0])
			_, buf, _, _ = s.Feed([]byte{5, 0}, buf[:0])
			_, _, _, _ = s.Feed(reply, buf[:0])
		}, 0},
		{"Socks5 partial reply", func() {
			var s upstream.Socks5
			_, _, _, _ = s.Feed([]byte{5}, buf[:0])
		}, 0},
		{"IsLinkLocalOrMetadata", func() { _ = upstream.IsLinkLocalOrMetadata(netip.MustParseAddr("fd00:ec2::254")) }, 0},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.run); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs, want %v", tt.name, got, tt.wantAllocs)
		}
	}
}

//go:build !race

package acl

import (
	"net/netip"
	"testing"
)

func TestCheckAllocs(t *testing.T) {
	l, err := New(
		[]string{"203.0.113.0/24", "proxy.example.com", "*.proxies.example"},
		[]string{"10.0.0.0/8", "bad.example.com"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		host       string
		addr       netip.Addr
		wantAllocs float64
	}{
		{"allowed by cidr", "x", netip.MustParseAddr("203.0.113.1"), 0},
		{"allowed by suffix", "p1.proxies.example", netip.MustParseAddr("198.51.100.1"), 0},
		{"denied by name", "bad.example.com", netip.MustParseAddr("203.0.113.1"), 0},
		{"denied mapped", "x", netip.MustParseAddr("::ffff:10.1.1.1"), 0},
		{"not allowed", "other", netip.MustParseAddr("2001:db8::1"), 0},
		{"link-local with zone", "fe80::1%eth0", netip.MustParseAddr("fe80::1%eth0"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, func() { _ = l.Check(tt.host, tt.addr) }); n != tt.wantAllocs {
				t.Errorf("Check allocs = %v, want %v", n, tt.wantAllocs)
			}
		})
	}
}

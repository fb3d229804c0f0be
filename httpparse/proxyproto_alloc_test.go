//go:build !race

package httpparse

import (
	"net/netip"
	"testing"
)

func TestProxyAllocs(t *testing.T) {
	var h ProxyHeader
	peers, err := ParseProxyPeers([]string{"10.0.0.0/8", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddr("::ffff:10.2.3.4")
	v1In := []byte("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n")
	v2In := v2(0x21, 0x11, v2Block4...)
	badIn := []byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n")
	tests := []struct {
		name       string
		fn         func()
		wantAllocs float64
	}{
		{"ProxyHeader.Parse v1 TCP6", func() { _, _ = h.Parse(v1In) }, 0},
		{"ProxyHeader.Parse v2 TCP4", func() { _, _ = h.Parse(v2In) }, 0},
		{"ProxyHeader.Parse malformed", func() { _, _ = h.Parse(badIn) }, 0},
		{"ProxyPeers.Contains", func() { _ = peers.Contains(peer) }, 0},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.fn); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs per run, want %v", tt.name, got, tt.wantAllocs)
		}
	}
}

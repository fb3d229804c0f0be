//go:build !race

package dnscache

import (
	"net/netip"
	"testing"
)

func TestCachedAllocs(t *testing.T) {
	s := newServer(t)
	s.set("up.example", &record{a: []string{"192.0.2.1"}, aaaa: []string{"2001:db8::1"}, ttl: 60})
	r, _ := newResolver(t, s, Config{})
	lookup(t, r, "up.example")
	_, _ = r.Lookup(t.Context(), "missing.example")
	var dst [8]netip.Addr
	tests := []struct {
		host       string
		wantHit    bool
		wantAllocs float64
	}{
		{"up.example", true, 0},
		{"UP.EXAMPLE", true, 0},
		{"missing.example", true, 0}, // negative hit
		{"other.example", false, 0},  // miss
		{"192.0.2.7", true, 0},
		{"2001:db8::7", true, 0},
		{"x.invalid", true, 0},
	}
	for _, tt := range tests {
		host := []byte(tt.host)
		var hit bool
		allocs := testing.AllocsPerRun(100, func() { _, hit, _ = r.Cached(dst[:0], host) })
		if hit != tt.wantHit || allocs != tt.wantAllocs {
			t.Errorf("Cached(%s): hit %v, %v allocs; want %v, %v", tt.host, hit, allocs, tt.wantHit, tt.wantAllocs)
		}
	}
}

//go:build !race

package routes

import "testing"

func TestSelectAllocs(t *testing.T) {
	for _, strategy := range []string{"failover", "round-robin", "random", "sticky"} {
		f := newSelectFixture(t, strategy, 16)
		if n := f.byUsername(); n != 8 {
			t.Fatalf("%s: picked %d entries", strategy, n)
		}
		tests := []struct {
			name       string
			f          func()
			wantAllocs float64
		}{
			{"username", func() { f.byUsername() }, 0},
			{"header", func() { f.byHeader() }, 0},
			{"unknown route", func() { _, _ = f.h.Table().Lookup([]byte("nope")) }, 0},
			{"bad username", func() { _, _ = ParseUsername([]byte("a-route-")) }, 0},
		}
		for _, tt := range tests {
			if got := testing.AllocsPerRun(200, tt.f); got != tt.wantAllocs {
				t.Errorf("%s/%s: %v allocs, want %v", strategy, tt.name, got, tt.wantAllocs)
			}
		}
	}
}

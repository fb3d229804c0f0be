//go:build !race

package health

import (
	"testing"
	"time"
)

func TestAllocs(t *testing.T) {
	c := newClock()
	tr := newTracker(c, 0)
	u := upstream(t, "https://user:p%40ss@Proxy.Example:8443")
	var keys [8]Key
	for i := range keys {
		keys[i] = Key(i + 1)
	}
	for range 3 {
		tr.Report(keys[1], false)
	}
	tr.Retain(keys[4:])
	c.add(31 * time.Second)
	var st [8]*State
	var dst [8]int
	tests := []struct {
		name       string
		f          func()
		wantAllocs float64
	}{
		{"Key", func() { tr.Key(u) }, 0},
		{"Lookup", func() { tr.Lookup(keys[1]) }, 0},
		{"States+Order", func() { Order(dst[:], tr.States(st[:], keys[:]), 3, c.now()) }, 0},
		{"Report success of unknown", func() { tr.Report(Key(999), true) }, 0},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.f); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs, want %v", tt.name, got, tt.wantAllocs)
		}
	}
}

func TestReportSuccessAllocs(t *testing.T) {
	c := newClock()
	tr := newTracker(c, 0)
	k := Key(7)
	tr.Retain([]Key{k})
	if got := testing.AllocsPerRun(100, func() { tr.Report(k, true) }); got != 0 {
		t.Errorf("success on a route entry: %v allocs", got)
	}
}

//go:build !race

package observability

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

func TestAccountingAllocs(t *testing.T) {
	a := NewAccounting(prometheus.NewRegistry(), AccountingOptions{
		RouteNames: func() []string { return []string{"a", "b"} },
		UserNames:  func() []string { return []string{"alice"} },
	})
	tests := []struct {
		name       string
		f          func()
		wantAllocs float64
	}{
		{"Request", func() { a.Request(1, 0, engine.KindConnect, proxystatus.ConnectionRefused) }, 0},
		{"Request without route or user", func() { a.Request(-1, -1, engine.KindHTTP, proxystatus.None) }, 0},
		{"Relayed", func() { a.Relayed(0, 0, 512, 4096) }, 0},
		{"Ejected", func() { a.Ejected(1) }, 0},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.f); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs, want %v", tt.name, got, tt.wantAllocs)
		}
	}
}

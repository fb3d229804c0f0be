//go:build !race

package observability

import (
	"testing"
	"time"

	"github.com/proxyto/proxyto/compression"
	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

// TestObserverAllocs holds the event-loop path to zero allocations: every
// observer method, and Done whenever no access line is written.
func TestObserverAllocs(t *testing.T) {
	off, _ := newTestStack(t, Options{AccessLog: false})
	warn, _ := newTestStack(t, Options{AccessLog: true, LogLevel: "warn"})
	sampled, _ := newTestStack(t, Options{AccessLog: true, AccessLogSample: 1e-18})
	acct, _ := newTestStack(t, Options{AccessLog: false, Accounting: &AccountingOptions{
		RouteNames: func() []string { return []string{"r"} },
		UserNames:  func() []string { return []string{"alice"} },
	}})
	o := off.Observer()
	ao := acct.Observer()
	routed := okRecord()
	routed.Route, routed.User = 0, 0
	rec := errRecord()
	ok := okRecord()
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"ClientOpened", o.ClientOpened},
		{"ClientClosed", o.ClientClosed},
		{"TunnelOpened", o.TunnelOpened},
		{"TunnelClosed", o.TunnelClosed},
		{"UpstreamDialed ok", func() { o.UpstreamDialed(time.Millisecond, proxystatus.None) }},
		{"UpstreamDialed error", func() { o.UpstreamDialed(time.Millisecond, proxystatus.DNSError) }},
		{"UpstreamHandshake", func() { o.UpstreamHandshake(time.Millisecond, proxystatus.HTTPResponseTimeout) }},
		{"PoolUsed", func() { o.PoolUsed(true); o.PoolUsed(false) }},
		{"LimitRejected", func() { o.LimitRejected(engine.LimitConnsPerIP) }},
		{"ProxyHeaderFailed", func() { o.ProxyHeaderFailed(engine.ProxyTimeout) }},
		{"CompressionDecided", func() { o.CompressionDecided(compression.Compress); o.CompressionDecided(compression.Busy) }},
		{"Relayed", func() { o.Relayed(-1, -1, 16384, 1500) }},
		{"Done access off", func() { o.Done(rec); o.Done(ok) }},
		{"Done level warn", func() { warn.Observer().Done(rec) }},
		{"Done sampled out", func() { sampled.Observer().Done(rec) }},
		{"Relayed with route and user", func() { ao.Relayed(0, 0, 16384, 1500) }},
		{"UpstreamEjected", func() { ao.UpstreamEjected(0); ao.UpstreamEjected(-1) }},
		{"Done with route and user", func() { ao.Done(routed) }},
	} {
		if n := testing.AllocsPerRun(1000, c.f); n != 0 {
			t.Errorf("%s: %v allocs per call, want 0", c.name, n)
		}
	}
}

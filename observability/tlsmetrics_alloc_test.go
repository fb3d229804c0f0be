//go:build !race

package observability

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/proxyto/proxyto/tlsfront"
)

// TestTLSObserverAllocs keeps the per-handshake calls allocation-free.
func TestTLSObserverAllocs(t *testing.T) {
	s, _ := newTestStack(t, Options{})
	o := s.TLSObserver()
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"HandshakeDone", func() { o.HandshakeDone(tls.VersionTLS13, time.Millisecond) }},
		{"HandshakeFailed", func() { o.HandshakeFailed(tlsfront.FailEOF, time.Millisecond) }},
	} {
		if n := testing.AllocsPerRun(1000, c.f); n != 0 {
			t.Errorf("%s: %v allocs per call, want 0", c.name, n)
		}
	}
}

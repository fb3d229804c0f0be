package observability

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proxyto/proxyto/tlsfront"
)

func TestTLSMetrics(t *testing.T) {
	s, _ := newTestStack(t, Options{})
	o := s.TLSObserver()
	o.HandshakeDone(tls.VersionTLS13, 3*time.Millisecond)
	o.HandshakeDone(tls.VersionTLS13, 2*time.Millisecond)
	o.HandshakeDone(tls.VersionTLS12, time.Millisecond)
	o.HandshakeDone(tls.VersionTLS10, time.Millisecond) // never negotiated; counted as other
	o.HandshakeFailed(tlsfront.FailTimeout, 10*time.Second)
	o.HandshakeFailed(tlsfront.FailNotTLS, time.Millisecond)
	o.HandshakeFailed(tlsfront.Failure(200), time.Millisecond) // out of range: other
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	o.CertificateLoaded(true, expiry)
	o.CertificateLoaded(false, time.Time{})

	m := s.tls
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"handshakes 1.3", testutil.ToFloat64(m.handshakes[1]), 2},
		{"handshakes 1.2", testutil.ToFloat64(m.handshakes[0]), 1},
		{"handshakes other", testutil.ToFloat64(m.handshakes[2]), 1},
		{"failures timeout", testutil.ToFloat64(m.failures[tlsfront.FailTimeout]), 1},
		{"failures not_tls", testutil.ToFloat64(m.failures[tlsfront.FailNotTLS]), 1},
		{"failures other", testutil.ToFloat64(m.failures[tlsfront.FailOther]), 1},
		{"loads ok", testutil.ToFloat64(m.loads[resultOK]), 1},
		{"loads error", testutil.ToFloat64(m.loads[resultError]), 1},
		{"expiry", testutil.ToFloat64(m.expiry), float64(expiry.Unix())},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(s.Registry(), mTLSHandshakeSec); n != 1 {
		t.Errorf("%s: %d series", mTLSHandshakeSec, n)
	}
	// Every label value exists at zero from the start.
	fresh, _ := newTestStack(t, Options{})
	if n := testutil.CollectAndCount(fresh.Registry(), mTLSFailures); n != int(tlsfront.NumFailures) {
		t.Errorf("%s: %d series at start, want %d", mTLSFailures, n, tlsfront.NumFailures)
	}
}

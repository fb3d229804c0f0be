package observability

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyto/proxyto/tlsfront"
)

// Metric names of the TLS client listener. Labels come from closed sets
// (tlsfront.Versions, tlsfront.Failure, ok/error), every series exists from
// start-up at zero, and nothing about a client (no SNI, no address, no
// error text) becomes a label.
const (
	mTLSHandshakes   = "proxyto_tls_handshakes_total"                     // {version}
	mTLSFailures     = "proxyto_tls_handshake_failures_total"             // {reason}
	mTLSHandshakeSec = "proxyto_tls_handshake_seconds"                    // histogram
	mTLSCertLoads    = "proxyto_tls_certificate_loads_total"              // {result}
	mTLSCertExpiry   = "proxyto_tls_certificate_expiry_timestamp_seconds" // gauge
)

// tlsBuckets spans a loopback handshake (about a millisecond) to one that
// took most of a client header timeout.
var tlsBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// tlsMetrics is the tlsfront.Observer behind Stack.TLSObserver. Its
// methods only touch series resolved in newTLSMetrics.
type tlsMetrics struct {
	handshakes [len(tlsfront.Versions)]prometheus.Counter
	failures   [tlsfront.NumFailures]prometheus.Counter
	duration   prometheus.Observer
	loads      [2]prometheus.Counter // resultOK, resultError
	expiry     prometheus.Gauge
}

var _ tlsfront.Observer = (*tlsMetrics)(nil)

// newTLSMetrics registers the TLS listener's series on reg, all at zero.
func newTLSMetrics(reg *prometheus.Registry) *tlsMetrics {
	m := &tlsMetrics{}
	handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mTLSHandshakes, Help: "TLS client handshakes completed on the TLS listener, by negotiated version (1.2, 1.3).",
	}, []string{"version"})
	for i, v := range tlsfront.Versions {
		m.handshakes[i] = handshakes.WithLabelValues(v)
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mTLSFailures, Help: "TLS listener connections closed before their handshake completed, by reason (timeout, eof, not_tls, proxy_header, version, negotiation, client_rejected, refused, other).",
	}, []string{"reason"})
	for f := tlsfront.Failure(0); f < tlsfront.NumFailures; f++ {
		m.failures[f] = failures.WithLabelValues(f.String())
	}
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: mTLSHandshakeSec, Help: "Duration of completed TLS client handshakes (after any PROXY header).", Buckets: tlsBuckets,
	})
	m.duration = duration
	loads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mTLSCertLoads, Help: "Loads of the TLS listener's certificate and key (start-up and each SIGHUP), by result (ok, error); on error the previous pair stays in use.",
	}, []string{"result"})
	m.loads[resultOK] = loads.WithLabelValues("ok")
	m.loads[resultError] = loads.WithLabelValues("error")
	m.expiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: mTLSCertExpiry, Help: "Expiry (Unix seconds) of the TLS listener's certificate in use; 0 without a TLS listener.",
	})
	reg.MustRegister(handshakes, failures, duration, loads, m.expiry)
	return m
}

// HandshakeDone counts a completed handshake.
func (m *tlsMetrics) HandshakeDone(version uint16, d time.Duration) {
	m.handshakes[tlsfront.VersionIndex(version)].Inc()
	m.duration.Observe(d.Seconds())
}

// HandshakeFailed counts a connection that closed before its handshake
// completed.
func (m *tlsMetrics) HandshakeFailed(f tlsfront.Failure, _ time.Duration) {
	if f >= tlsfront.NumFailures {
		f = tlsfront.FailOther
	}
	m.failures[f].Inc()
}

// CertificateLoaded counts a load of the pair and, on success, exports the
// new leaf's expiry.
func (m *tlsMetrics) CertificateLoaded(ok bool, notAfter time.Time) {
	if !ok {
		m.loads[resultError].Inc()
		return
	}
	m.loads[resultOK].Inc()
	if !notAfter.IsZero() {
		m.expiry.Set(float64(notAfter.Unix()))
	}
}

// TLSObserver returns the observer to pass as tlsfront.Config.Observer: it
// counts handshakes, failures and certificate loads in /metrics. It never
// logs (a failed reload's error is returned by tlsfront.Server.Reload for
// the caller to log). Safe for concurrent use.
func (s *Stack) TLSObserver() tlsfront.Observer { return s.tls }

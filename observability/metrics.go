package observability

import (
	"runtime"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/proxyto/proxyto/compression"
	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

// Metric names. Every label value comes from a closed set (engine.Kind,
// proxystatus.Type, engine.LimitReason, a fixed pair), and every series is
// created at zero in newMetrics, so the observer resolves nothing per event.
// No label ever holds a host, a target or a credential.
const (
	mRequests       = "proxyto_requests_total"                // {kind, error}
	mErrors         = "proxyto_errors_total"                  // {type}
	mUpstreamErrors = "proxyto_upstream_errors_total"         // {stage, type}
	mClients        = "proxyto_client_connections"            // gauge
	mClientsTotal   = "proxyto_client_connections_total"      // counter
	mClientsLimit   = "proxyto_client_connections_limit"      // gauge
	mTunnels        = "proxyto_tunnels_active"                // gauge
	mDial           = "proxyto_upstream_dial_seconds"         // histogram {result}
	mHandshake      = "proxyto_upstream_handshake_seconds"    // histogram {result}
	mDuration       = "proxyto_request_duration_seconds"      // histogram {kind}
	mBytes          = "proxyto_bytes_total"                   // {direction}
	mPool           = "proxyto_pool_requests_total"           // {result}
	mLimits         = "proxyto_limit_rejections_total"        // {reason}
	mProxyFailures  = "proxyto_proxy_protocol_failures_total" // {reason}
	mCompression    = "proxyto_compression_responses_total"   // {verdict}
	mAccessDropped  = "proxyto_access_log_sampled_out_total"  // counter
	mBuildInfo      = "proxyto_build_info"                    // {version, goversion}
	mReady          = "proxyto_ready"                         // gauge func
)

// Indexes of the result label of the upstream histograms.
const (
	resultOK = iota
	resultError
)

// Histogram buckets in seconds. Upstream steps are sub-second in the normal
// case and bounded by the dial and response-header timeouts; request duration
// covers long tunnels too.
var (
	upstreamBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// metrics holds every series the observer touches, resolved at start-up.
type metrics struct {
	requests       [engine.NumKinds][proxystatus.NumTypes]prometheus.Counter
	errors         [proxystatus.NumTypes]prometheus.Counter // index 0 (None) unused
	upstreamErrors [2][proxystatus.NumTypes]prometheus.Counter
	clients        prometheus.Gauge
	clientsTotal   prometheus.Counter
	tunnels        prometheus.Gauge
	dial           [2]prometheus.Observer // resultOK, resultError
	handshake      [2]prometheus.Observer
	duration       [engine.NumKinds]prometheus.Observer
	bytesUp        prometheus.Counter
	bytesDown      prometheus.Counter
	poolHit        prometheus.Counter
	poolMiss       prometheus.Counter
	limits         [engine.NumLimitReasons]prometheus.Counter
	proxyFailures  [engine.NumProxyFailures]prometheus.Counter
	compression    [compression.NumReasons]prometheus.Counter
	accessDropped  prometheus.Counter

	ready atomic.Pointer[func() bool] // set by ServeAdmin; nil means ready
}

// stages of an upstream attempt, for proxyto_upstream_errors_total.
const (
	stageDial = iota
	stageHandshake
)

var stageNames = [2]string{"dial", "handshake"}

// newMetrics registers every proxyto series plus the Go runtime and process
// collectors on reg.
func newMetrics(reg *prometheus.Registry, version string, maxConns int) *metrics {
	m := &metrics{}

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mRequests,
		Help: "Requests and tunnels finished, by kind (http, connect, upgrade) and Proxy-Status error type (none for success).",
	}, []string{"kind", "error"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mErrors,
		Help: "Requests and tunnels that ended with an error, by Proxy-Status error type.",
	}, []string{"type"})
	upErrs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mUpstreamErrors,
		Help: "Failed upstream attempts by stage (dial, handshake) and Proxy-Status error type, including attempts a failover list recovered from.",
	}, []string{"stage", "type"})
	for k := engine.Kind(0); k < engine.NumKinds; k++ {
		for t := 0; t < proxystatus.NumTypes; t++ {
			m.requests[k][t] = requests.WithLabelValues(k.String(), proxystatus.Type(t).String())
		}
	}
	for t := 1; t < proxystatus.NumTypes; t++ {
		name := proxystatus.Type(t).String()
		m.errors[t] = errs.WithLabelValues(name)
		for s := range stageNames {
			m.upstreamErrors[s][t] = upErrs.WithLabelValues(stageNames[s], name)
		}
	}

	m.clients = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: mClients, Help: "Client connections open now.",
	})
	m.clientsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: mClientsTotal, Help: "Client connections accepted.",
	})
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: mClientsLimit, Help: "Configured cap on concurrent client connections; 0 means no cap.",
	})
	limit.Set(float64(maxConns))
	m.tunnels = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: mTunnels, Help: "Byte relays (CONNECT tunnels and upgraded connections) open now.",
	})

	dial := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: mDial, Help: "Upstream dial time (DNS plus TCP connect), by result (ok, error).", Buckets: upstreamBuckets,
	}, []string{"result"})
	handshake := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: mHandshake, Help: "Time from the first byte sent to an upstream to its response head, by result (ok, error).", Buckets: upstreamBuckets,
	}, []string{"result"})
	for i, r := range [2]string{"ok", "error"} {
		m.dial[i] = dial.WithLabelValues(r)
		m.handshake[i] = handshake.WithLabelValues(r)
	}
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: mDuration, Help: "Duration of requests and tunnels, by kind.", Buckets: durationBuckets,
	}, []string{"kind"})
	for k := engine.Kind(0); k < engine.NumKinds; k++ {
		m.duration[k] = duration.WithLabelValues(k.String())
	}

	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mBytes, Help: "Bytes relayed, by direction: up is client to upstream, down is upstream to client.",
	}, []string{"direction"})
	m.bytesUp = bytes.WithLabelValues("up")
	m.bytesDown = bytes.WithLabelValues("down")

	pool := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mPool, Help: "Plain-HTTP requests by whether a pooled upstream connection was reused (hit) or not (miss).",
	}, []string{"result"})
	m.poolHit = pool.WithLabelValues("hit")
	m.poolMiss = pool.WithLabelValues("miss")

	limits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mLimits, Help: "Clients refused by a limit, by reason.",
	}, []string{"reason"})
	for r := engine.LimitReason(0); r < engine.NumLimitReasons; r++ {
		m.limits[r] = limits.WithLabelValues(r.String())
	}

	proxyFailures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mProxyFailures, Help: "Connections on the plain listener from a --proxy-protocol-from peer closed without a valid PROXY protocol header, by reason (missing, malformed, too_long, timeout, incomplete). The TLS listener counts its own as proxyto_tls_handshake_failures_total{reason=\"proxy_header\"}.",
	}, []string{"reason"})
	for f := engine.ProxyFailure(0); f < engine.NumProxyFailures; f++ {
		m.proxyFailures[f] = proxyFailures.WithLabelValues(f.String())
	}
	compressed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mCompression, Help: "Plain-HTTP responses under --compress, by verdict: compress (gzipped), busy (every rule allowed it but the encoder pool was full), or the first rule that refused.",
	}, []string{"verdict"})
	for r := compression.Reason(0); r < compression.NumReasons; r++ {
		m.compression[r] = compressed.WithLabelValues(r.String())
	}

	m.accessDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: mAccessDropped, Help: "Access lines not written because of --access-log-sample.",
	})

	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: mBuildInfo, Help: "Always 1; labels carry the build.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)

	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: mReady, Help: "1 while the gateway accepts new work, 0 while draining.",
	}, func() float64 {
		if f := m.ready.Load(); f != nil && !(*f)() {
			return 0
		}
		return 1
	})

	reg.MustRegister(
		requests, errs, upErrs, m.clients, m.clientsTotal, limit, m.tunnels,
		dial, handshake, duration, bytes, pool, limits, proxyFailures, compressed, m.accessDropped, build, ready,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// setReady makes proxyto_ready follow f.
func (m *metrics) setReady(f func() bool) { m.ready.Store(&f) }

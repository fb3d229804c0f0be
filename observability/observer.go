package observability

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyto/proxyto/compression"
	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

// observer implements engine.Observer over pre-resolved metrics and the
// access logger. Every method is safe for concurrent use from any number of
// event loops: metrics are atomics, sampling draws from the runtime's
// per-thread generator, and the logger's buffered syncer takes one short lock
// per written line.
type observer struct {
	m      *metrics
	log    *zap.Logger
	access bool // write access lines at all
	// keepAll skips sampling; otherwise a line is kept when a uniform
	// uint64 is below threshold (= sample × 2⁶⁴).
	keepAll   bool
	threshold uint64
	// fastJSON, when set, receives access lines encoded by appendAccessJSON
	// instead of through zap (JSON format only).
	fastJSON *asyncWriter
	// acct counts per route and per user, and names them in access lines;
	// nil without Options.Accounting.
	acct *Accounting
}

// lineBufs recycles access-line encoding buffers.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

var _ engine.Observer = (*observer)(nil)

func newObserver(m *metrics, log *zap.Logger, access bool, sample float64) *observer {
	o := &observer{m: m, log: log, access: access, keepAll: sample >= 1}
	if !o.keepAll {
		t := math.Ldexp(sample, 64)
		if t >= math.MaxUint64 {
			o.keepAll = true
		} else {
			o.threshold = uint64(t)
		}
	}
	return o
}

// ClientOpened counts an accepted client connection.
func (o *observer) ClientOpened() {
	o.m.clients.Inc()
	o.m.clientsTotal.Inc()
}

// ClientClosed counts a closed client connection.
func (o *observer) ClientClosed() { o.m.clients.Dec() }

// TunnelOpened counts an established byte relay.
func (o *observer) TunnelOpened() { o.m.tunnels.Inc() }

// TunnelClosed counts a finished byte relay.
func (o *observer) TunnelClosed() { o.m.tunnels.Dec() }

// UpstreamDialed records one dial's latency and, on failure, its error type.
func (o *observer) UpstreamDialed(d time.Duration, t proxystatus.Type) {
	o.upstream(&o.m.dial, stageDial, d, t)
}

// UpstreamHandshake records one upstream handshake's latency and, on
// failure, its error type.
func (o *observer) UpstreamHandshake(d time.Duration, t proxystatus.Type) {
	o.upstream(&o.m.handshake, stageHandshake, d, t)
}

func (o *observer) upstream(h *[2]prometheus.Observer, stage int, d time.Duration, t proxystatus.Type) {
	if t == proxystatus.None {
		h[resultOK].Observe(d.Seconds())
		return
	}
	h[resultError].Observe(d.Seconds())
	o.m.upstreamErrors[stage][clampType(t)].Inc()
}

// PoolUsed counts a pool hit or miss.
func (o *observer) PoolUsed(hit bool) {
	if hit {
		o.m.poolHit.Inc()
	} else {
		o.m.poolMiss.Inc()
	}
}

// LimitRejected counts a client refused by a limit.
func (o *observer) LimitRejected(r engine.LimitReason) {
	if r >= engine.NumLimitReasons {
		r = engine.LimitDraining
	}
	o.m.limits[r].Inc()
}

// ProxyHeaderFailed counts a connection closed for want of a valid PROXY
// protocol header.
func (o *observer) ProxyHeaderFailed(f engine.ProxyFailure) {
	if f >= engine.NumProxyFailures {
		f = engine.ProxyMalformed
	}
	o.m.proxyFailures[f].Inc()
}

// CompressionDecided counts one plain-HTTP response's compression verdict.
func (o *observer) CompressionDecided(r compression.Reason) {
	if r >= compression.NumReasons {
		r = compression.NotText
	}
	o.m.compression[r].Inc()
}

// Relayed adds relayed bytes; called per chunk, so it is two atomic adds,
// and two more for a route or a user.
func (o *observer) Relayed(route, user, up, down int) {
	if up > 0 {
		o.m.bytesUp.Add(float64(up))
	}
	if down > 0 {
		o.m.bytesDown.Add(float64(down))
	}
	if o.acct != nil && (route >= 0 || user >= 0) {
		o.acct.Relayed(route, user, up, down)
	}
}

// UpstreamEjected counts an upstream taken out of service.
func (o *observer) UpstreamEjected(route int) {
	if o.acct != nil {
		o.acct.Ejected(route)
	}
}

// Done counts one finished request or tunnel and writes its access line when
// the access log is on, the sampler keeps it and the info level is enabled.
// Nothing for the line is built otherwise.
func (o *observer) Done(r *engine.Record) {
	k := r.Kind
	if k >= engine.NumKinds {
		k = engine.KindHTTP
	}
	t := clampType(r.Error)
	o.m.requests[k][t].Inc()
	if t != proxystatus.None {
		o.m.errors[t].Inc()
	}
	o.m.duration[k].Observe(r.Duration.Seconds())
	if o.acct != nil {
		o.acct.Request(r.Route, r.User, k, t)
	}
	o.writeAccess(r)
}

// writeAccess writes r's access line when the access log is on, the
// sampler keeps it and the info level is enabled.
func (o *observer) writeAccess(r *engine.Record) {
	if !o.access {
		return
	}
	if !o.keepAll && rand.Uint64() >= o.threshold {
		o.m.accessDropped.Inc()
		return
	}
	if o.fastJSON != nil {
		if !o.log.Core().Enabled(zapcore.InfoLevel) {
			return
		}
		a := accessLine{Record: r}
		o.names(&a)
		bp := lineBufs.Get().(*[]byte)
		*bp = appendAccessJSON((*bp)[:0], &a, time.Now())
		_, _ = o.fastJSON.Write(*bp)
		lineBufs.Put(bp)
		return
	}
	if ce := o.log.Check(zapcore.InfoLevel, "access"); ce != nil {
		// zap keeps the marshaler in an interface: a pooled line costs no
		// allocation.
		a := accessLines.Get().(*accessLine)
		*a = accessLine{Record: r}
		o.names(a)
		ce.Write(zap.Inline(a))
		*a = accessLine{}
		accessLines.Put(a)
	}
}

// names fills in the route and user names of an access line.
func (o *observer) names(a *accessLine) {
	if o.acct != nil {
		a.route = o.acct.routes.name(a.Route)
		a.user = o.acct.users.name(a.User)
	}
}

// accessLines recycles the access lines of the zap (console) path.
var accessLines = sync.Pool{New: func() any { return new(accessLine) }}

// clampType maps an out-of-range type to ProxyInternalError so that an index
// is always valid.
func clampType(t proxystatus.Type) proxystatus.Type {
	if int(t) >= proxystatus.NumTypes {
		return proxystatus.ProxyInternalError
	}
	return t
}

// Access-line field names, in the order they are written. Tests hold the
// logger to exactly this set (route and user when the request had them,
// detail when non-empty).
var accessFields = []string{
	"client", "kind", "method", "target", "upstream", "route", "user", "status",
	"bytes_in", "bytes_out", "duration", "error", "detail",
}

// accessLine marshals a Record as the access-line fields, with the names of
// its route and authenticated user (from the routes and credential files,
// never the username as sent: it may carry a session key). The encoder
// copies every byte slice before Done returns, as Record requires.
type accessLine struct {
	*engine.Record
	route, user string // empty: none
}

// MarshalLogObject writes the access fields. error is always present ("none"
// on success); detail only when non-empty. Userinfo in an absolute-form
// target, anything before '@' in the upstream and any "user:pass@" token in
// the detail are redacted, in case a client or a bug puts a credential there.
func (a *accessLine) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if a.Client.IsValid() {
		var buf [64]byte
		enc.AddByteString("client", a.Client.AppendTo(buf[:0]))
	} else {
		enc.AddString("client", "")
	}
	k := a.Kind
	if k >= engine.NumKinds {
		k = engine.KindHTTP
	}
	enc.AddString("kind", k.String())
	enc.AddByteString("method", a.Method)
	enc.AddByteString("target", redactTarget(a.Target))
	enc.AddByteString("upstream", redactUpstream(a.Upstream))
	if a.route != "" {
		enc.AddString("route", a.route)
	}
	if a.user != "" {
		enc.AddString("user", a.user)
	}
	enc.AddInt("status", a.Status)
	enc.AddInt64("bytes_in", a.BytesIn)
	enc.AddInt64("bytes_out", a.BytesOut)
	enc.AddDuration("duration", a.Duration)
	enc.AddString("error", clampType(a.Error).String())
	if a.Detail != "" {
		enc.AddString("detail", redactDetail(a.Detail))
	}
	return nil
}

// redactTarget replaces the userinfo of an absolute-form URL
// ("http://user:pass@host/") with "***". Targets without '@' in their
// authority are returned as they are, without copying.
func redactTarget(t []byte) []byte {
	i := bytes.Index(t, []byte("://"))
	if i < 0 {
		return t
	}
	auth := t[i+3:]
	if end := bytes.IndexAny(auth, "/?#"); end >= 0 {
		auth = auth[:end]
	}
	at := bytes.LastIndexByte(auth, '@')
	if at < 0 {
		return t
	}
	out := make([]byte, 0, len(t))
	out = append(out, t[:i+3]...)
	out = append(out, "***"...)
	return append(out, t[i+3+at:]...)
}

// redactDetail replaces every userinfo-looking token before an '@' in s
// with "***" ("dial alice:pw@up:3128" becomes "dial ***@up:3128"). Details
// without '@' are returned as they are, without copying.
func redactDetail(s string) string {
	if strings.IndexByte(s, '@') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		at := strings.IndexByte(s, '@')
		if at < 0 {
			b.WriteString(s)
			return b.String()
		}
		start := strings.LastIndexAny(s[:at], " \t\"'(<[=,;/") + 1
		b.WriteString(s[:start])
		if start < at {
			b.WriteString("***")
		}
		b.WriteByte('@')
		s = s[at+1:]
	}
}

// redactUpstream keeps only what follows the last '@' of an upstream
// host:port; the engine never passes credentials, this is a second guard.
func redactUpstream(u []byte) []byte {
	if at := bytes.LastIndexByte(u, '@'); at >= 0 {
		return u[at+1:]
	}
	return u
}

// logOnly writes access lines and counts nothing (Options.NoRequestMetrics).
type logOnly struct{ o *observer }

func (logOnly) ClientOpened()                                     {}
func (logOnly) ClientClosed()                                     {}
func (logOnly) TunnelOpened()                                     {}
func (logOnly) TunnelClosed()                                     {}
func (logOnly) UpstreamDialed(time.Duration, proxystatus.Type)    {}
func (logOnly) UpstreamHandshake(time.Duration, proxystatus.Type) {}
func (logOnly) PoolUsed(bool)                                     {}
func (logOnly) LimitRejected(engine.LimitReason)                  {}
func (logOnly) ProxyHeaderFailed(engine.ProxyFailure)             {}
func (logOnly) CompressionDecided(compression.Reason)             {}
func (logOnly) Relayed(int, int, int, int)                        {}
func (logOnly) UpstreamEjected(int)                               {}
func (l logOnly) Done(r *engine.Record)                           { l.o.writeAccess(r) }

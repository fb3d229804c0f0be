package observability

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyto/proxyto/dnscache"
	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

// Metric names of routes, users, upstream health, DNS and reloads. Route and
// user labels take names from the routes file and the credential files,
// never from requests, so their sets are bounded by configuration.
const (
	mRouteRequests   = "proxyto_route_requests_total"     // {route, kind, result}
	mRouteBytes      = "proxyto_route_bytes_total"        // {route, direction}
	mRouteEjections  = "proxyto_route_ejections_total"    // {route}
	mRouteUpstreams  = "proxyto_route_upstreams"          // gauge {route}
	mRouteEjected    = "proxyto_route_upstreams_ejected"  // gauge {route}
	mUserRequests    = "proxyto_user_requests_total"      // {user, kind, result}
	mUserBytes       = "proxyto_user_bytes_total"         // {user, direction}
	mEjections       = "proxyto_upstream_ejections_total" // counter
	mEjected         = "proxyto_upstreams_ejected"        // gauge
	mConfigReloads   = "proxyto_config_reloads_total"     // {result}
	mDNSCache        = "proxyto_dns_cache_lookups_total"  // {result}
	mDNSQueries      = "proxyto_dns_queries_total"        // counter
	mDNSFailures     = "proxyto_dns_failures_total"       // counter
	mDNSCacheEntries = "proxyto_dns_cache_entries"        // gauge
)

// AccountingOptions says where Accounting reads names and states. Every
// field may be nil: the metrics it feeds are then not exported.
type AccountingOptions struct {
	// RouteNames returns route names indexed by route ID
	// (routes.Holder.Names); it must only ever grow.
	RouteNames func() []string
	// UserNames returns user names indexed by user ID (auth.Holder.Names);
	// it must only ever grow.
	UserNames func() []string
	// Routes reports each current route's upstreams and ejected upstreams
	// at scrape time (routes.Holder).
	Routes interface {
		EachRoute(f func(name string, upstreams, ejected int))
	}
	// Health reports how many upstreams are ejected now (health.Tracker).
	Health interface{ Ejected() int }
	// DNS reports the name cache's counters (dnscache.Resolver).
	DNS interface{ Stats() dnscache.Stats }
}

// Accounting counts requests, tunnels and bytes per route and per
// authenticated user, upstream ejections, and configuration reloads, and
// exports route health and DNS cache gauges read at scrape time. The engine
// calls its methods on event loops: they are safe for concurrent use, never
// block, and allocate only the first time a route or user ID is seen after a
// reload added it (its series are then built once).
type Accounting struct {
	routes     seriesTable
	users      seriesTable
	ejections  prometheus.Counter
	reloads    [2]prometheus.Counter // resultOK, resultError
	routeEject *prometheus.CounterVec
}

// series are one route's or user's counters.
type series struct {
	requests [engine.NumKinds][2]prometheus.Counter // [kind][resultOK|resultError]
	up, down prometheus.Counter
	ejected  prometheus.Counter // routes only
}

// NewAccounting registers the accounting metrics on reg (Stack.Registry).
func NewAccounting(reg prometheus.Registerer, o AccountingOptions) *Accounting {
	a := &Accounting{}
	routeReq := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mRouteRequests,
		Help: "Requests and tunnels finished per route (names from the routes file), by kind and result (ok, error).",
	}, []string{"route", "kind", "result"})
	routeBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mRouteBytes,
		Help: "Bytes relayed per route, by direction: up is client to upstream, down is upstream to client.",
	}, []string{"route", "direction"})
	a.routeEject = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mRouteEjections,
		Help: "Upstreams of a route taken out of service by passive health checks.",
	}, []string{"route"})
	userReq := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mUserRequests,
		Help: "Requests and tunnels finished per authenticated user (names from the credential files), by kind and result (ok, error).",
	}, []string{"user", "kind", "result"})
	userBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mUserBytes,
		Help: "Bytes relayed per authenticated user, by direction: up is client to upstream, down is upstream to client.",
	}, []string{"user", "direction"})
	a.ejections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: mEjections,
		Help: "Upstreams (from routes or X-Proxy-To lists) taken out of service by passive health checks.",
	})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: mConfigReloads,
		Help: "Configuration reloads (SIGHUP) by result (ok, error); a failed reload keeps the previous configuration.",
	}, []string{"result"})
	a.reloads[resultOK] = reloads.WithLabelValues("ok")
	a.reloads[resultError] = reloads.WithLabelValues("error")
	reg.MustRegister(routeReq, routeBytes, a.routeEject, userReq, userBytes, a.ejections, reloads)

	a.routes.init(o.RouteNames, func(name string) *series {
		s := newSeries(routeReq, routeBytes, name)
		s.ejected = a.routeEject.WithLabelValues(name)
		return s
	})
	a.users.init(o.UserNames, func(name string) *series {
		return newSeries(userReq, userBytes, name)
	})
	if o.Routes != nil || o.Health != nil || o.DNS != nil {
		reg.MustRegister(newStateCollector(o))
	}
	return a
}

func newSeries(req, bytes *prometheus.CounterVec, name string) *series {
	s := &series{}
	for k := engine.Kind(0); k < engine.NumKinds; k++ {
		s.requests[k][resultOK] = req.WithLabelValues(name, k.String(), "ok")
		s.requests[k][resultError] = req.WithLabelValues(name, k.String(), "error")
	}
	s.up = bytes.WithLabelValues(name, "up")
	s.down = bytes.WithLabelValues(name, "down")
	return s
}

// Request counts one finished request or tunnel for its route and user
// (-1 for none: a request through X-Proxy-To, or without client
// authentication); t is its Proxy-Status error type (None for success).
func (a *Accounting) Request(route, user int, kind engine.Kind, t proxystatus.Type) {
	if kind >= engine.NumKinds {
		return
	}
	res := resultOK
	if t != proxystatus.None {
		res = resultError
	}
	if s := a.routes.get(route); s != nil {
		s.requests[kind][res].Inc()
	}
	if s := a.users.get(user); s != nil {
		s.requests[kind][res].Inc()
	}
}

// Relayed counts bytes as they move, for a request's route and user (-1 for
// none), like engine.Observer.Relayed.
func (a *Accounting) Relayed(route, user int, up, down int) {
	if s := a.routes.get(route); s != nil {
		addBytes(s, up, down)
	}
	if s := a.users.get(user); s != nil {
		addBytes(s, up, down)
	}
}

func addBytes(s *series, up, down int) {
	if up > 0 {
		s.up.Add(float64(up))
	}
	if down > 0 {
		s.down.Add(float64(down))
	}
}

// Ejected counts one upstream taken out of service (a health.NowEjected
// report), for its route, or -1 for an X-Proxy-To upstream.
func (a *Accounting) Ejected(route int) {
	a.ejections.Inc()
	if s := a.routes.get(route); s != nil {
		s.ejected.Inc()
	}
}

// ConfigReloaded counts one reload (a SIGHUP re-reading the routes file,
// the htpasswd file and the TLS pair); ok is false when any of them failed
// to load and kept its previous contents.
func (a *Accounting) ConfigReloaded(ok bool) {
	if ok {
		a.reloads[resultOK].Inc()
	} else {
		a.reloads[resultError].Inc()
	}
}

// seriesTable holds series indexed by a stable ID, grown copy-on-write when
// a reload adds names: the hot path is one atomic load and an index.
type seriesTable struct {
	names func() []string
	build func(name string) *series

	mu  sync.Mutex // serialises grow
	cur atomic.Pointer[[]*series]
}

func (t *seriesTable) init(names func() []string, build func(string) *series) {
	t.names, t.build = names, build
	t.cur.Store(&[]*series{})
	if names != nil {
		t.grow(-1)
	}
}

// get returns the series of id, or nil for -1 or an unknown ID.
func (t *seriesTable) get(id int) *series {
	if id < 0 || t.names == nil {
		return nil
	}
	if cur := *t.cur.Load(); id < len(cur) {
		return cur[id]
	}
	return t.grow(id)
}

// name returns the name of id, or "" for -1 or an unknown ID.
func (t *seriesTable) name(id int) string {
	if id < 0 || t.names == nil {
		return ""
	}
	if names := t.names(); id < len(names) {
		return names[id]
	}
	return ""
}

// grow builds series for every name not covered yet and returns id's.
func (t *seriesTable) grow(id int) *series {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.cur.Load()
	names := t.names()
	if len(names) > len(cur) {
		next := make([]*series, len(names))
		copy(next, cur)
		for i := len(cur); i < len(names); i++ {
			next[i] = t.build(names[i])
		}
		t.cur.Store(&next)
		cur = next
	}
	if id < 0 || id >= len(cur) {
		return nil
	}
	return cur[id]
}

// stateCollector exports gauges and counters read from their owners at
// scrape time, so the request path pays nothing for them.
type stateCollector struct {
	o                                               AccountingOptions
	upstreams, ejected, allEjected                  *prometheus.Desc
	dnsLookups, dnsQueries, dnsFailures, dnsEntries *prometheus.Desc
}

func newStateCollector(o AccountingOptions) *stateCollector {
	return &stateCollector{
		o:           o,
		upstreams:   prometheus.NewDesc(mRouteUpstreams, "Upstreams listed per route in the current routes file.", []string{"route"}, nil),
		ejected:     prometheus.NewDesc(mRouteEjected, "Upstreams of a route out of service now (ejected by passive health checks, until a probe succeeds).", []string{"route"}, nil),
		allEjected:  prometheus.NewDesc(mEjected, "Upstreams out of service now, from routes and X-Proxy-To lists.", nil, nil),
		dnsLookups:  prometheus.NewDesc(mDNSCache, "Upstream name lookups by whether the cache answered them (hit) or a resolution was needed (miss).", []string{"result"}, nil),
		dnsQueries:  prometheus.NewDesc(mDNSQueries, "DNS messages sent to resolve upstream names.", nil, nil),
		dnsFailures: prometheus.NewDesc(mDNSFailures, "Upstream name resolutions that failed (no such name, no address, server failure or timeout) and were cached as failures.", nil, nil),
		dnsEntries:  prometheus.NewDesc(mDNSCacheEntries, "Upstream names in the DNS cache now.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.o.Routes != nil {
		ch <- c.upstreams
		ch <- c.ejected
	}
	if c.o.Health != nil {
		ch <- c.allEjected
	}
	if c.o.DNS != nil {
		ch <- c.dnsLookups
		ch <- c.dnsQueries
		ch <- c.dnsFailures
		ch <- c.dnsEntries
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.o.Routes != nil {
		c.o.Routes.EachRoute(func(name string, upstreams, ejected int) {
			ch <- prometheus.MustNewConstMetric(c.upstreams, prometheus.GaugeValue, float64(upstreams), name)
			ch <- prometheus.MustNewConstMetric(c.ejected, prometheus.GaugeValue, float64(ejected), name)
		})
	}
	if c.o.Health != nil {
		ch <- prometheus.MustNewConstMetric(c.allEjected, prometheus.GaugeValue, float64(c.o.Health.Ejected()))
	}
	if c.o.DNS != nil {
		s := c.o.DNS.Stats()
		ch <- prometheus.MustNewConstMetric(c.dnsLookups, prometheus.CounterValue, float64(s.Hits), "hit")
		ch <- prometheus.MustNewConstMetric(c.dnsLookups, prometheus.CounterValue, float64(s.Misses), "miss")
		ch <- prometheus.MustNewConstMetric(c.dnsQueries, prometheus.CounterValue, float64(s.Queries))
		ch <- prometheus.MustNewConstMetric(c.dnsFailures, prometheus.CounterValue, float64(s.Failures))
		ch <- prometheus.MustNewConstMetric(c.dnsEntries, prometheus.GaugeValue, float64(s.Entries))
	}
}

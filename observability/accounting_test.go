package observability

import (
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proxyto/proxyto/dnscache"
	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

// names is a growing name list, as routes.Holder.Names and
// auth.Holder.Names are.
type names struct {
	mu sync.Mutex
	l  []string
}

func (n *names) get() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.l
}

func (n *names) add(s string) {
	n.mu.Lock()
	n.l = append(n.l[:len(n.l):len(n.l)], s)
	n.mu.Unlock()
}

type fakeRoutes map[string][2]int

func (f fakeRoutes) EachRoute(fn func(name string, upstreams, ejected int)) {
	for name, v := range f {
		fn(name, v[0], v[1])
	}
}

type fakeHealth int

func (f fakeHealth) Ejected() int { return int(f) }

type fakeDNS dnscache.Stats

func (f fakeDNS) Stats() dnscache.Stats { return dnscache.Stats(f) }

// addTestAccounting registers accounting with one route and one user on
// reg, so that the metrics list and the dashboard checks see its series.
func addTestAccounting(t testing.TB, reg prometheus.Registerer) *Accounting {
	t.Helper()
	return NewAccounting(reg, AccountingOptions{
		RouteNames: func() []string { return []string{"residential"} },
		UserNames:  func() []string { return []string{"alice"} },
		Routes:     fakeRoutes{"residential": {3, 1}},
		Health:     fakeHealth(2),
		DNS:        fakeDNS{Hits: 5, Misses: 2, Queries: 4, Failures: 1, Entries: 3},
	})
}

func TestAccounting(t *testing.T) {
	reg := prometheus.NewRegistry()
	rn, un := &names{l: []string{"dc", "res"}}, &names{l: []string{"alice"}}
	a := NewAccounting(reg, AccountingOptions{
		RouteNames: rn.get,
		UserNames:  un.get,
		Routes:     fakeRoutes{"dc": {2, 0}, "res": {3, 1}},
		Health:     fakeHealth(4),
		DNS:        fakeDNS{Hits: 5, Misses: 2, Queries: 4, Failures: 1, Entries: 3},
	})
	a.Request(1, 0, engine.KindConnect, proxystatus.None)
	a.Request(1, 0, engine.KindConnect, proxystatus.ConnectionRefused)
	a.Request(0, -1, engine.KindHTTP, proxystatus.None)
	a.Request(-1, 0, engine.KindHTTP, proxystatus.None)
	a.Request(7, 9, engine.KindHTTP, proxystatus.None) // IDs no name covers: dropped
	a.Relayed(1, 0, 100, 2000)
	a.Relayed(-1, -1, 5, 5)
	a.Ejected(1)
	a.Ejected(-1)
	a.ConfigReloaded(true)
	a.ConfigReloaded(false)
	a.ConfigReloaded(false)

	// A reload adds a route and a user: their first use builds the series.
	rn.add("new")
	un.add("bob")
	a.Request(2, 1, engine.KindUpgrade, proxystatus.None)

	checkNonZero(t, reg, mRouteRequests, map[string]float64{
		`kind=connect,result=error,route=res`: 1,
		`kind=connect,result=ok,route=res`:    1,
		`kind=http,result=ok,route=dc`:        1,
		`kind=upgrade,result=ok,route=new`:    1,
	})
	checkNonZero(t, reg, mUserRequests, map[string]float64{
		`kind=connect,result=error,user=alice`: 1,
		`kind=connect,result=ok,user=alice`:    1,
		`kind=http,result=ok,user=alice`:       1,
		`kind=upgrade,result=ok,user=bob`:      1,
	})
	checkNonZero(t, reg, mRouteBytes, map[string]float64{`direction=down,route=res`: 2000, `direction=up,route=res`: 100})
	checkNonZero(t, reg, mUserBytes, map[string]float64{`direction=down,user=alice`: 2000, `direction=up,user=alice`: 100})
	checkNonZero(t, reg, mRouteEjections, map[string]float64{`route=res`: 1})
	checkNonZero(t, reg, mEjections, map[string]float64{``: 2})
	checkNonZero(t, reg, mConfigReloads, map[string]float64{`result=ok`: 1, `result=error`: 2})
	checkNonZero(t, reg, mRouteUpstreams, map[string]float64{`route=dc`: 2, `route=res`: 3})
	checkNonZero(t, reg, mRouteEjected, map[string]float64{`route=res`: 1})
	checkNonZero(t, reg, mEjected, map[string]float64{``: 4})
	checkNonZero(t, reg, mDNSCache, map[string]float64{`result=hit`: 5, `result=miss`: 2})
	checkNonZero(t, reg, mDNSQueries, map[string]float64{``: 4})
	checkNonZero(t, reg, mDNSFailures, map[string]float64{``: 1})
	checkNonZero(t, reg, mDNSCacheEntries, map[string]float64{``: 3})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// checkNonZero compares the non-zero series of one family with want, keyed
// by "label=value,..." in label-name order.
func checkNonZero(t *testing.T, reg *prometheus.Registry, name string, want map[string]float64) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if v != 0 {
				got[strings.Join(parts, ",")] = v
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s = %v, want %v", name, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s{%s} = %v, want %v", name, k, got[k], v)
		}
	}
}

func TestAccountingWithoutSources(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewAccounting(reg, AccountingOptions{})
	a.Request(0, 0, engine.KindHTTP, proxystatus.None)
	a.Relayed(0, 0, 1, 1)
	a.Ejected(0)
	checkNonZero(t, reg, mEjections, map[string]float64{``: 1})
}

// TestAccountingConcurrent grows names while loops count; run with -race.
func TestAccountingConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	rn := &names{l: []string{"r0"}}
	a := NewAccounting(reg, AccountingOptions{RouteNames: rn.get, UserNames: rn.get})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				a.Request(i%8, i%8, engine.KindHTTP, proxystatus.None)
				a.Relayed(i%8, -1, 1, 1)
			}
		}()
	}
	for i := 1; i < 8; i++ {
		rn.add("r" + string(rune('0'+i)))
	}
	wg.Wait()
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// TestObserverAccounting: with Options.Accounting, the engine observer
// counts each request, its bytes and ejections per route and user, and its
// access line names both; without a route or user, neither appears.
func TestObserverAccounting(t *testing.T) {
	s, buf := newTestStack(t, Options{AccessLog: true, Accounting: &AccountingOptions{
		RouteNames: func() []string { return []string{"dc", "residential"} },
		UserNames:  func() []string { return []string{"alice", "bob"} },
	}})
	o := s.Observer()
	r := okRecord()
	r.Route, r.User = 1, 0
	o.Relayed(1, 0, 100, 2000)
	o.Done(r)
	o.Done(errRecord()) // neither
	o.UpstreamEjected(1)
	o.UpstreamEjected(-1)
	s.Accounting().ConfigReloaded(false)
	reg := s.Registry()
	checkNonZero(t, reg, mRouteRequests, map[string]float64{`kind=http,result=ok,route=residential`: 1})
	checkNonZero(t, reg, mUserRequests, map[string]float64{`kind=http,result=ok,user=alice`: 1})
	checkNonZero(t, reg, mRouteBytes, map[string]float64{`direction=down,route=residential`: 2000, `direction=up,route=residential`: 100})
	checkNonZero(t, reg, mUserBytes, map[string]float64{`direction=down,user=alice`: 2000, `direction=up,user=alice`: 100})
	checkNonZero(t, reg, mRouteEjections, map[string]float64{`route=residential`: 1})
	checkNonZero(t, reg, mEjections, map[string]float64{``: 2})
	checkNonZero(t, reg, mConfigReloads, map[string]float64{`result=error`: 1})

	flush(t, s)
	got := lines(t, buf.String(), "access")
	if len(got) != 2 {
		t.Fatalf("%d access lines, want 2", len(got))
	}
	if got[0]["route"] != "residential" || got[0]["user"] != "alice" {
		t.Errorf("access line route %v user %v, want residential alice", got[0]["route"], got[0]["user"])
	}
	if _, ok := got[1]["route"]; ok {
		t.Errorf("access line without a route has one: %v", got[1])
	}
	if _, ok := got[1]["user"]; ok {
		t.Errorf("access line without a user has one: %v", got[1])
	}
}

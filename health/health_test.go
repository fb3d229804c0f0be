package health

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
)

// clock is a fake monotonic clock.
type clock struct{ t atomic.Int64 }

func (c *clock) now() int64          { return c.t.Load() }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }
func newClock() *clock               { c := &clock{}; c.t.Store(int64(time.Hour)); return c }
func newTracker(c *clock, max int) *Tracker {
	return New(Config{EjectAfter: 3, EjectFor: 30 * time.Second, MaxTracked: max, Now: c.now})
}

func upstream(t testing.TB, s string) *httpparse.Upstream {
	t.Helper()
	var l httpparse.UpstreamList
	if err := l.Parse([]byte(s)); err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	u := l.List[0]
	return &u
}

func TestEjectProbeRecover(t *testing.T) {
	c := newClock()
	tr := newTracker(c, 0)
	k := tr.Key(upstream(t, "a.example:3128"))
	step := func(ok bool, want Transition) {
		t.Helper()
		if got := tr.Report(k, ok); got != want {
			t.Fatalf("Report(%v) = %v, want %v", ok, got, want)
		}
	}
	status := func(want Status) {
		t.Helper()
		if got := tr.Lookup(k).Status(c.now()); got != want {
			t.Fatalf("Status = %v, want %v", got, want)
		}
	}

	step(false, Unchanged)
	step(false, Unchanged)
	status(Healthy)
	step(true, Unchanged) // a success breaks the streak
	if tr.Lookup(k) != nil {
		t.Fatal("a healthy X-Proxy-To upstream keeps state")
	}
	step(false, Unchanged)
	step(false, Unchanged)
	step(false, NowEjected)
	status(Ejected)
	if tr.Ejected() != 1 {
		t.Fatalf("Ejected() = %d, want 1", tr.Ejected())
	}

	c.add(29 * time.Second)
	status(Ejected)
	c.add(time.Second)
	status(HalfOpen)
	s := tr.Lookup(k)
	if !s.ClaimProbe(c.now()) {
		t.Fatal("first probe claim failed")
	}
	if s.ClaimProbe(c.now()) {
		t.Fatal("second request claimed the probe too")
	}
	status(Ejected) // probe in flight

	// The probe fails: another full cool-down.
	step(false, Unchanged)
	status(Ejected)
	c.add(29 * time.Second)
	status(Ejected)
	c.add(time.Second)
	status(HalfOpen)

	// A probe whose answer never comes lapses after one cool-down.
	if !s.ClaimProbe(c.now()) {
		t.Fatal("claim after second cool-down failed")
	}
	c.add(29 * time.Second)
	status(Ejected)
	c.add(time.Second)
	status(HalfOpen)
	if !s.ClaimProbe(c.now()) {
		t.Fatal("lapsed probe could not be claimed again")
	}

	step(true, Recovered)
	if tr.Lookup(k) != nil {
		t.Fatal("recovered X-Proxy-To upstream keeps state")
	}
	if tr.Ejected() != 0 {
		t.Fatalf("Ejected() = %d after recovery", tr.Ejected())
	}
	// The streak starts from zero again.
	step(false, Unchanged)
	step(false, Unchanged)
	status(Healthy)
}

func TestClaimProbeAtTimeZero(t *testing.T) {
	c := &clock{}
	tr := New(Config{EjectAfter: 1, EjectFor: time.Second, Now: c.now})
	k := Key(1)
	tr.Report(k, false)
	c.t.Store(int64(time.Second))
	s := tr.Lookup(k)
	if !s.ClaimProbe(int64(time.Second)) || s.ClaimProbe(int64(time.Second)) {
		t.Fatal("exactly one claim must succeed")
	}
}

func TestKey(t *testing.T) {
	tr := New(Config{})
	key := func(s string) Key { return tr.Key(upstream(t, s)) }
	same := [][2]string{
		{"a.example:3128", "A.Example:3128"},
		{"a.example", "http://a.example:80"},
		{"u:p@a.example:1", "u:p@a.example:1"},
		{"u:p%40@a.example:1", "u:p%40@A.EXAMPLE:1"},
		{"%75:p@a.example:1", "u:p@a.example:1"}, // percent-decoded first
	}
	for _, p := range same {
		if key(p[0]) != key(p[1]) {
			t.Errorf("Key(%q) != Key(%q)", p[0], p[1])
		}
	}
	distinct := []string{
		"a.example:3128", "a.example:3129", "b.example:3128", "https://a.example:3128",
		"socks5://a.example:3128", "socks5h://a.example:3128",
		"u:p@a.example:3128", "u:q@a.example:3128", "v:p@a.example:3128",
		"u@a.example:3128", ":@a.example:3128", "ab:c@a.example:3128", "a:bc@a.example:3128",
		"[::1]:3128", "127.0.0.1:3128",
	}
	seen := map[Key]string{}
	for _, s := range distinct {
		k := key(s)
		if prev, dup := seen[k]; dup {
			t.Errorf("Key(%q) == Key(%q)", s, prev)
		}
		seen[k] = s
	}
}

func TestOrder(t *testing.T) {
	c := newClock()
	tr := newTracker(c, 0)
	mk := func(st Status) *State {
		s := &State{t: tr}
		switch st {
		case Ejected:
			s.until.Store(c.now() + int64(time.Second))
		case HalfOpen:
			s.until.Store(c.now() - 1)
		}
		return s
	}
	H, E, O := Healthy, Ejected, HalfOpen
	tests := []struct {
		name   string
		states []Status
		start  int
		room   int
		want   []int
	}{
		{"all healthy from 0", []Status{H, H, H}, 0, 8, []int{0, 1, 2}},
		{"all healthy rotated", []Status{H, H, H}, 2, 8, []int{2, 0, 1}},
		{"start wraps", []Status{H, H, H}, 7, 8, []int{1, 2, 0}},
		{"room bounds", []Status{H, H, H, H}, 1, 2, []int{1, 2}},
		{"ejected skipped", []Status{E, H, E, H}, 0, 8, []int{1, 3}},
		{"half-open first is probed", []Status{O, H, H}, 0, 8, []int{0, 1, 2}},
		{"half-open after a healthy one is skipped", []Status{H, O, H}, 0, 8, []int{0, 2}},
		{"half-open after ejected ones is probed", []Status{E, O, H}, 0, 8, []int{1, 2}},
		{"all ejected: all, in index order", []Status{E, E, E}, 2, 8, []int{0, 1, 2}},
		{"all ejected, room bounds", []Status{E, E, E}, 1, 2, []int{0, 1}},
		{"one entry ejected", []Status{E}, 0, 8, []int{0}},
		{"empty", nil, 0, 8, []int{}},
		{"no room", []Status{H}, 0, 0, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			states := make([]*State, len(tt.states))
			for i, st := range tt.states {
				states[i] = mk(st)
			}
			dst := make([]int, tt.room)
			got := Order(dst, states, tt.start, c.now())
			if !slices.Equal(got, tt.want) {
				t.Errorf("Order = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOrderProbeClaimedOnce(t *testing.T) {
	c := newClock()
	tr := newTracker(c, 0)
	a, b := Key(10), Key(20)
	for range 3 {
		tr.Report(a, false)
	}
	c.add(30 * time.Second)
	keys := []Key{a, b}
	var st [2]*State
	var dst [2]int
	first := Order(dst[:], tr.States(st[:], keys), 0, c.now())
	if !slices.Equal(first, []int{0, 1}) {
		t.Fatalf("first request after cool-down = %v, want the probe [0 1]", first)
	}
	second := Order(dst[:], tr.States(st[:], keys), 0, c.now())
	if !slices.Equal(second, []int{1}) {
		t.Fatalf("second request = %v, want [1] while the probe is in flight", second)
	}
}

func TestBounded(t *testing.T) {
	c := newClock()
	tr := newTracker(c, 16)
	// One upstream ejected first: it must survive a flood of one-off failures.
	ej := Key(12345)
	for range 3 {
		tr.Report(ej, false)
	}
	for i := range 100000 {
		tr.Report(Key(uint64(i)*0x9e3779b97f4a7c15+1), false)
		c.add(time.Millisecond)
	}
	n := 0
	for i := range tr.lists {
		if tr.lists[i].Load() != nil {
			n++
		}
	}
	if n > 16 {
		t.Fatalf("%d list entries, bound 16", n)
	}
	// 100s later the cool-down is over, but the upstream stays ejected
	// (half-open) until a probe succeeds.
	if s := tr.Lookup(ej); s == nil || !s.IsEjected() {
		t.Fatal("an ejected upstream was evicted by one-off failures")
	}
}

func TestRetain(t *testing.T) {
	c := newClock()
	tr := newTracker(c, 0)
	a, b, x := Key(1), Key(2), Key(3)
	st := tr.Retain([]Key{a, b})
	for range 3 {
		tr.Report(a, false)
	}
	if !st[0].IsEjected() || tr.Lookup(a) != st[0] {
		t.Fatal("route state not shared with Report")
	}
	// x fails as an X-Proxy-To upstream, then joins the routes.
	tr.Report(x, false)
	st2 := tr.Retain([]Key{x, a})
	if st2[1] != st[0] || !st2[1].IsEjected() {
		t.Fatal("state of a kept upstream not carried over")
	}
	if st2[0].fails.Load() != 1 {
		t.Fatal("state of a promoted X-Proxy-To upstream not carried over")
	}
	if tr.Lookup(b) != nil {
		t.Fatal("state of a dropped upstream kept")
	}
	if got := tr.Ejected(); got != 1 {
		t.Fatalf("Ejected() = %d, want 1 (promotion must not count twice)", got)
	}
	// A route state that recovers stays (route entries persist).
	tr.Report(a, true)
	if tr.Lookup(a) != st[0] {
		t.Fatal("recovered route state dropped")
	}
}

func TestCounts(t *testing.T) {
	tests := []struct {
		t        proxystatus.Type
		received int
		want     bool
	}{
		{proxystatus.ConnectionRefused, 0, true},
		{proxystatus.ConnectionTerminated, 0, true},
		{proxystatus.ConnectionTimeout, 0, true},
		{proxystatus.HTTPResponseTimeout, 0, true},
		{proxystatus.TLSProtocolError, 0, true},
		{proxystatus.TLSCertificateError, 0, true},
		{proxystatus.DNSError, 0, true},
		{proxystatus.HTTPResponseError, 0, true},
		{proxystatus.DestinationUnavailable, 502, true},
		{proxystatus.DestinationUnavailable, 503, true},
		{proxystatus.DestinationUnavailable, 403, false},
		{proxystatus.HTTPRequestDenied, 407, false},
		{proxystatus.DestinationIPProhibited, 0, false},
		{proxystatus.ProxyLoopDetected, 0, false},
		{proxystatus.ProxyInternalResponse, 0, false},
		{proxystatus.None, 0, false},
	}
	for _, tt := range tests {
		if got := Counts(tt.t, tt.received); got != tt.want {
			t.Errorf("Counts(%v, %d) = %v, want %v", tt.t, tt.received, got, tt.want)
		}
	}
}

// TestConcurrent exercises every path from many goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	c := newClock()
	tr := newTracker(c, 64)
	keys := make([]Key, 32)
	for i := range keys {
		keys[i] = Key(uint64(i) * 7919)
	}
	tr.Retain(keys[:8])
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st [8]*State
			var dst [8]int
			for i := range 2000 {
				k := keys[(g*31+i)%len(keys)]
				tr.Report(k, i%5 == 0)
				Order(dst[:], tr.States(st[:], keys[i%24:i%24+8]), i, tr.Now())
				c.add(time.Millisecond)
				if i%500 == 0 {
					tr.Retain(keys[i%16 : i%16+8])
					_ = tr.Ejected()
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkOrder8(b *testing.B) {
	tr := New(Config{})
	var keys [8]Key
	for i := range keys {
		keys[i] = tr.Key(upstream(b, fmt.Sprintf("u:p@h%d.example:3128", i)))
	}
	tr.Report(keys[2], false)
	var st [8]*State
	var dst [8]int
	b.ReportAllocs()
	for b.Loop() {
		Order(dst[:], tr.States(st[:], keys[:]), 0, tr.Now())
	}
}

func BenchmarkKey(b *testing.B) {
	tr := New(Config{})
	u := upstream(b, "http://user:pass@proxy.example.com:3128")
	b.ReportAllocs()
	for b.Loop() {
		tr.Key(u)
	}
}

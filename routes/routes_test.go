package routes

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyto/proxyto/health"
)

// clock is a fake monotonic clock for the health tracker.
type clock struct{ t atomic.Int64 }

func (c *clock) now() int64          { return c.t.Load() }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }

// routeFile builds a routes file with one route of n entries.
func routeFile(name, strategy string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "routes:\n  %s:\n    strategy: %s\n    upstreams:\n", name, strategy)
	for i := range n {
		fmt.Fprintf(&b, "      - http://u:p@10.0.%d.%d:3128\n", i/250, i%250+1)
	}
	return b.String()
}

// stored parses doc and stores it in a fresh holder with a fake clock.
func stored(t testing.TB, doc string) (*Holder, *clock) {
	t.Helper()
	c := &clock{}
	c.t.Store(int64(time.Hour))
	h := NewHolder(health.New(health.Config{EjectAfter: 3, EjectFor: 30 * time.Second, Now: c.now}))
	tab, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Store(tab); err != nil {
		t.Fatal(err)
	}
	return h, c
}

func route(t testing.TB, h *Holder, name string) *Route {
	t.Helper()
	r, err := h.Table().Lookup([]byte(name))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// eject fails entry i of r until it is ejected.
func eject(t testing.TB, h *Holder, r *Route, i int) {
	t.Helper()
	for range 3 {
		h.Tracker().Report(r.Key(i), false)
	}
	if !r.State(i).IsEjected() {
		t.Fatalf("entry %d not ejected", i)
	}
}

func TestSelect(t *testing.T) {
	h, _ := stored(t, "routes:\n  a:\n    upstreams: [h:1]\n  b:\n    upstreams: [h:2]\ndefault_route: b\n")
	tab := h.Table()
	tests := []struct {
		ref       []byte
		userRoute string
		want      string
		err       error
	}{
		{[]byte("a"), "", "a", nil},
		{[]byte("a"), "b", "a", nil}, // X-Proxy-To wins
		{nil, "a", "a", nil},
		{nil, "", "b", nil}, // default
		{[]byte("zz"), "", "", ErrUnknownRoute},
		{[]byte(""), "", "", ErrUnknownRoute}, // "@" alone
		{nil, "zz", "", ErrUnknownRoute},
	}
	for _, tt := range tests {
		r, err := tab.Select(tt.ref, []byte(tt.userRoute))
		if !errors.Is(err, tt.err) {
			t.Errorf("Select(%q, %q) err = %v, want %v", tt.ref, tt.userRoute, err, tt.err)
			continue
		}
		if err == nil && r.Name() != tt.want {
			t.Errorf("Select(%q, %q) = %s, want %s", tt.ref, tt.userRoute, r.Name(), tt.want)
		}
	}
	var none *Table
	if r, err := none.Select(nil, nil); r != nil || err != nil {
		t.Errorf("nil table Select = %v, %v", r, err)
	}
	if _, err := none.Select([]byte("a"), nil); !errors.Is(err, ErrUnknownRoute) {
		t.Errorf("nil table Select(@a) = %v", err)
	}
	_, err := tab.Lookup([]byte("zz"))
	var se *SelectError
	if !errors.As(err, &se) || se.Response().Code() != 400 || strings.Contains(se.Response().Detail, "zz") {
		t.Errorf("unknown route error = %#v", err)
	}
}

func TestRoundRobinExact(t *testing.T) {
	h, _ := stored(t, routeFile("rr", "round-robin", 5))
	r := route(t, h, "rr")
	var dst [8]int
	counts := make([]int, 5)
	for i := range 5000 {
		order := r.Pick(dst[:], nil, h.Tracker().Now())
		if len(order) != 5 {
			t.Fatalf("order %v", order)
		}
		if order[0] != i%5 {
			t.Fatalf("request %d starts at %d, want %d", i, order[0], i%5)
		}
		for j := range order {
			if order[j] != (order[0]+j)%5 {
				t.Fatalf("fallbacks %v not in rotation", order)
			}
		}
		counts[order[0]]++
	}
	for i, n := range counts {
		if n != 1000 {
			t.Errorf("entry %d first %d times, want exactly 1000", i, n)
		}
	}
}

func TestRandomSpread(t *testing.T) {
	h, _ := stored(t, routeFile("rnd", "random", 6))
	r := route(t, h, "rnd")
	var dst [8]int
	const n = 60000
	counts := make([]float64, 6)
	for range n {
		counts[r.Pick(dst[:], nil, 0)[0]]++
	}
	// Chi-square with 5 degrees of freedom: 25.7 is the 0.9999 quantile.
	chi := 0.0
	for _, c := range counts {
		chi += (c - n/6) * (c - n/6) / (n / 6)
	}
	if chi > 25.7 {
		t.Errorf("first picks %v are not uniform (chi-square %.1f)", counts, chi)
	}
}

func TestFailoverOrder(t *testing.T) {
	h, _ := stored(t, routeFile("fo", "failover", 3))
	r := route(t, h, "fo")
	var dst [8]int
	for range 10 {
		if got := r.Pick(dst[:], []byte("ignored"), 0); !slices.Equal(got, []int{0, 1, 2}) {
			t.Fatalf("failover order %v", got)
		}
	}
	if got := r.Pick(dst[:2], nil, 0); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("bounded order %v", got)
	}
}

func TestStickyStableAndSpread(t *testing.T) {
	h, _ := stored(t, routeFile("st", "sticky", 5))
	r := route(t, h, "st")
	var dst [8]int
	counts := make([]int, 5)
	for k := range 10000 {
		key := []byte(fmt.Sprintf("session-%d", k))
		first := slices.Clone(r.Pick(dst[:], key, 0))
		if len(first) != 5 {
			t.Fatalf("sticky order %v", first)
		}
		for range 3 {
			if again := r.Pick(dst[:], key, 0); !slices.Equal(again, first) {
				t.Fatalf("key %s: %v then %v", key, first, again)
			}
		}
		counts[first[0]]++
	}
	for i, c := range counts {
		if c < 1700 || c > 2300 {
			t.Errorf("entry %d owns %d of 10000 keys, want about 2000 (%v)", i, c, counts)
		}
	}
	// Without a key: round-robin.
	a := r.Pick(dst[:], nil, 0)[0]
	b := r.Pick(dst[:], nil, 0)[0]
	if b != (a+1)%5 {
		t.Errorf("keyless sticky picks %d then %d, want round-robin", a, b)
	}
}

// TestStickyReplicasAgree: two processes (holders with different health
// seeds) parse the same file and send every key to the same upstream.
func TestStickyReplicasAgree(t *testing.T) {
	doc := routeFile("st", "sticky", 7)
	h1, _ := stored(t, doc)
	h2, _ := stored(t, doc)
	r1, r2 := route(t, h1, "st"), route(t, h2, "st")
	var d1, d2 [8]int
	for k := range 2000 {
		key := []byte(fmt.Sprint(k))
		if a, b := r1.Pick(d1[:], key, 0), r2.Pick(d2[:], key, 0); !slices.Equal(a, b) {
			t.Fatalf("key %s: replica orders %v and %v", key, a, b)
		}
	}
}

// TestStickyRendezvous is the rendezvous property: ejecting an upstream
// moves exactly the keys it owned, each to its second choice; and adding an
// upstream to the file moves only keys to the new one, about 1/(n+1) of them.
func TestStickyRendezvous(t *testing.T) {
	h, c := stored(t, routeFile("st", "sticky", 5))
	r := route(t, h, "st")
	var dst [8]int
	const keys = 5000
	before := make([][]int, keys)
	for k := range keys {
		before[k] = slices.Clone(r.Pick(dst[:], []byte(fmt.Sprint(k)), c.now()))
	}
	eject(t, h, r, 2)
	moved := 0
	for k := range keys {
		now := r.Pick(dst[:], []byte(fmt.Sprint(k)), c.now())
		switch {
		case before[k][0] == 2:
			moved++
			if now[0] != before[k][1] {
				t.Fatalf("key %d moved to %d, want its second choice %d", k, now[0], before[k][1])
			}
			if slices.Contains(now, 2) {
				t.Fatalf("key %d still lists the ejected entry: %v", k, now)
			}
		case now[0] != before[k][0]:
			t.Fatalf("key %d moved from %d to %d though its upstream is healthy", k, before[k][0], now[0])
		}
	}
	if moved == 0 {
		t.Fatal("no key was on the ejected entry")
	}
	// Recovery: after the cool-down one key's request probes the entry; once
	// the probe succeeds every key is back where it was.
	c.add(30 * time.Second)
	probed := -1
	for k := range keys {
		if before[k][0] == 2 {
			if got := r.Pick(dst[:], []byte(fmt.Sprint(k)), c.now()); got[0] != 2 {
				t.Fatalf("first key of the half-open entry got %v, want the probe", got)
			}
			probed = k
			break
		}
	}
	for k := probed + 1; k < keys; k++ {
		if before[k][0] == 2 {
			if got := r.Pick(dst[:], []byte(fmt.Sprint(k)), c.now()); got[0] == 2 {
				t.Fatal("a second request probed the half-open entry")
			}
			break
		}
	}
	h.Tracker().Report(r.Key(2), true)
	for k := range keys {
		if now := r.Pick(dst[:], []byte(fmt.Sprint(k)), c.now()); !slices.Equal(now, before[k]) {
			t.Fatalf("key %d after recovery: %v, want %v", k, now, before[k])
		}
	}

	// One more upstream in the file.
	h6, _ := stored(t, routeFile("st", "sticky", 6))
	r6 := route(t, h6, "st")
	moved = 0
	for k := range keys {
		now := r6.Pick(dst[:], []byte(fmt.Sprint(k)), 0)[0]
		if now != before[k][0] {
			if now != 5 {
				t.Fatalf("key %d moved from %d to old entry %d", k, before[k][0], now)
			}
			moved++
		}
	}
	if want := keys / 6; math.Abs(float64(moved-want)) > float64(want)/4 {
		t.Errorf("%d keys moved to the new entry, want about %d", moved, want)
	}
}

func TestPickSkipsEjectedAndFallsBack(t *testing.T) {
	for _, strategy := range []string{"failover", "round-robin", "random", "sticky"} {
		t.Run(strategy, func(t *testing.T) {
			h, c := stored(t, routeFile("r", strategy, 4))
			r := route(t, h, "r")
			var dst [8]int
			eject(t, h, r, 1)
			eject(t, h, r, 3)
			for k := range 200 {
				got := r.Pick(dst[:], []byte(fmt.Sprint(k)), c.now())
				if len(got) != 2 || slices.Contains(got, 1) || slices.Contains(got, 3) {
					t.Fatalf("order %v includes ejected entries", got)
				}
			}
			eject(t, h, r, 0)
			eject(t, h, r, 2)
			if got := r.Pick(dst[:], []byte("k"), c.now()); !slices.Equal(got, []int{0, 1, 2, 3}) {
				t.Fatalf("all ejected: %v, want every entry in file order", got)
			}
			if got := r.Ejected(); got != 4 {
				t.Fatalf("Ejected() = %d", got)
			}
		})
	}
}

func TestHolderReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	write := func(doc string) {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &clock{}
	h := NewHolder(health.New(health.Config{Now: c.now}))
	if h.Table() != nil {
		t.Fatal("a new holder has a table")
	}
	write("routes:\n  b:\n    upstreams: [\"u:p@h1:1\", \"h2:2\"]\n  a:\n    upstreams: [h3:3]\n")
	if err := h.Reload(path); err != nil {
		t.Fatal(err)
	}
	t1 := h.Table()
	a1, b1 := route(t, h, "a"), route(t, h, "b")
	eject(t, h, b1, 0)
	if names := h.Names(); !slices.Equal(names, []string{"a", "b"}) || a1.ID() != 0 || b1.ID() != 1 {
		t.Fatalf("names %v, ids a=%d b=%d", names, a1.ID(), b1.ID())
	}

	// A bad file keeps the old table.
	write("routes:\n  b:\n    upstreams: [\"u:hunter2@h1:0\"]\n")
	err := h.Reload(path)
	if err == nil || strings.Contains(err.Error(), "hunter2") || h.Table() != t1 {
		t.Fatalf("bad reload: err %v, table replaced %v", err, h.Table() != t1)
	}

	// A new file: "0" joins, "a" leaves, b's first upstream stays ejected.
	write("routes:\n  0:\n    upstreams: [h9:9]\n  b:\n    strategy: round-robin\n    upstreams: [\"h2:2\", \"u:p@H1:1\"]\n")
	if err := h.Reload(path); err != nil {
		t.Fatal(err)
	}
	b2, z := route(t, h, "b"), route(t, h, "0")
	if b2.ID() != 1 || z.ID() != 2 {
		t.Errorf("ids after reload: b=%d 0=%d, want 1 and 2", b2.ID(), z.ID())
	}
	if b2.State(1) != b1.State(0) || !b2.State(1).IsEjected() {
		t.Error("health of an upstream that stayed was not carried over")
	}
	if !slices.Equal(h.Names(), []string{"a", "b", "0"}) {
		t.Errorf("names %v", h.Names())
	}
	if _, err := h.Table().Lookup([]byte("a")); err == nil {
		t.Error("a removed route is still served")
	}
	// The old table still works for requests that hold it.
	var dst [4]int
	if got := b1.Pick(dst[:], nil, 0); !slices.Equal(got, []int{1}) {
		t.Errorf("old table pick %v", got)
	}
	if err := h.Store(t1); !errors.Is(err, ErrStored) {
		t.Errorf("storing a table twice: %v", err)
	}
}

// TestConcurrentPickReload reads and reloads at once; run with -race.
func TestConcurrentPickReload(t *testing.T) {
	h, c := stored(t, routeFile("r", "sticky", 6))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dst [8]int
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := h.Table().Select(nil, []byte("r"))
				if err != nil {
					t.Error(err)
					return
				}
				order := r.Pick(dst[:], []byte(fmt.Sprint(i%50)), c.now())
				h.Tracker().Report(r.Key(order[0]), (i+g)%4 != 0)
				c.add(time.Millisecond)
			}
		}()
	}
	for i := range 50 {
		tab, err := Parse([]byte(routeFile("r", []string{"sticky", "random", "round-robin", "failover"}[i%4], 4+i%4)))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Store(tab); err != nil {
			t.Fatal(err)
		}
		_ = h.Names()
	}
	close(stop)
	wg.Wait()
}

// Package health is proxyto's passive health check for upstream proxies:
// an upstream that failed EjectAfter times in a row before any byte of a
// request reached it is ejected (skipped) for EjectFor, then tried again by
// one request (half-open); a success puts it back in service. When every
// candidate of a request is ejected they are all tried, in order: a slow
// answer beats none.
//
// State lives per upstream identity (Key): scheme, host, port and the
// credentials. Credentials belong in the identity because the vendors proxyto
// fronts multiplex exit pools, countries and sessions behind one host:port by
// user name, and a failure of one credential (a 5xx to CONNECT from a pool
// with no exit) says nothing about the others; and because a client that
// sends its own credentials in X-Proxy-To must not be able to eject the
// upstream that other clients reach with theirs. The cost is that a host that
// is down altogether is ejected once per credential it is used with. The key
// is a hash seeded per process, so the table never holds a credential.
//
// Two kinds of state share one Tracker: route entries (Tracker.Retain, kept
// for as long as a routes file names them, across reloads) and upstreams
// from X-Proxy-To lists, which get state only once they fail and live in a
// fixed-size table, so clients cannot grow it.
//
// Every method is safe for concurrent use. Reads (Status, Lookup, Order) are
// atomic loads: they never block or allocate and may run on an event loop.
//
//	engine, on the loop                       dial worker, off the loop
//	─────────────────────────────────────     ─────────────────────────────
//	route: Route.Pick(order, session, now)    for each attempt in order:
//	list:  Tracker.States(st, keys)             dial, handshake
//	       Order(order, st, 0, now)             Tracker.Report(key, ok)
//	                                             → Ejected: count it
package health

import (
	"encoding/binary"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
)

// Key identifies an upstream: a 64-bit hash of its scheme, host (case-folded),
// port and credentials, seeded per Tracker. Two different upstreams share a
// key with probability 2^-64 per pair; the seed keeps anyone from aiming at
// that.
type Key uint64

// Config configures New. The zero value of each field means its default.
type Config struct {
	// EjectAfter is how many failures in a row eject an upstream. Default 3.
	EjectAfter int
	// EjectFor is how long an ejected upstream is skipped before one request
	// may try it again. Default 30s.
	EjectFor time.Duration
	// MaxTracked bounds the upstreams from X-Proxy-To lists that hold state
	// (rounded up to a power of two). Route entries do not count against it.
	// Default 4096.
	MaxTracked int
	// Now returns monotonic nanoseconds. nil: the process clock. Tests pass a
	// fake clock.
	Now func() int64
}

// Status is what a request may do with an upstream now.
type Status uint8

// The statuses, as Check reports them.
const (
	// Healthy: in service (no state, or fewer than EjectAfter failures).
	Healthy Status = iota
	// Ejected: cooling down, or cooled down with its one probe in flight.
	Ejected
	// HalfOpen: cooled down, and no request has claimed the probe yet.
	HalfOpen
)

// Transition is what a Report did to an upstream's state, so that the caller,
// which knows the route, can count ejections.
type Transition uint8

// The transitions Report returns.
const (
	Unchanged Transition = iota
	// NowEjected: this failure took the upstream out of service.
	NowEjected
	// Recovered: this success put an ejected upstream back in service.
	Recovered
)

// State is the health of one upstream identity. The nil *State is a healthy
// upstream with no history. Its methods are safe for concurrent use.
type State struct {
	key Key
	t   *Tracker

	fails atomic.Int32 // consecutive failures
	until atomic.Int64 // 0: in service; else the end of the cool-down
	probe atomic.Int64 // when the half-open probe was claimed; 0: not claimed
	last  atomic.Int64 // time of the last failure: the stalest list entry is evicted first
}

// Status reports what a request may do with the upstream at now. It never
// blocks or allocates.
func (s *State) Status(now int64) Status {
	if s == nil {
		return Healthy
	}
	until := s.until.Load()
	if until == 0 {
		return Healthy
	}
	if now < until {
		return Ejected
	}
	if p := s.probe.Load(); p != 0 && now-p < int64(s.t.ejectFor) {
		return Ejected
	}
	return HalfOpen
}

// ClaimProbe makes the caller the one request that tries a half-open
// upstream. It returns false when the upstream is not half-open or another
// request claimed it first. An unanswered claim lapses after EjectFor, so a
// probe lost to an aborted request delays recovery by one cool-down, no more.
func (s *State) ClaimProbe(now int64) bool {
	if s == nil {
		return false
	}
	if until := s.until.Load(); until == 0 || now < until {
		return false
	}
	p := s.probe.Load()
	if p != 0 && now-p < int64(s.t.ejectFor) {
		return false
	}
	claim := now
	if claim == 0 {
		claim = 1 // 0 means unclaimed
	}
	return s.probe.CompareAndSwap(p, claim)
}

// IsEjected reports whether the upstream is out of service (cooling down or
// half-open), for gauges.
func (s *State) IsEjected() bool { return s != nil && s.until.Load() != 0 }

// fail records a failure at now.
func (s *State) fail(now int64) Transition {
	s.last.Store(now)
	n := s.fails.Add(1)
	if s.until.Load() != 0 {
		// A failed probe (or a straggler dialed before the ejection):
		// another cool-down, and a fresh probe after it.
		s.until.Store(now + int64(s.t.ejectFor))
		s.probe.Store(0)
		return Unchanged
	}
	if int(n) >= s.t.ejectAfter && s.until.CompareAndSwap(0, now+int64(s.t.ejectFor)) {
		s.probe.Store(0)
		return NowEjected
	}
	return Unchanged
}

// succeed records a success. A healthy upstream's state is only read, so
// successes on a busy route entry do not bounce its cache line between the
// event loops.
func (s *State) succeed() Transition {
	if s.fails.Load() != 0 {
		s.fails.Store(0)
	}
	if s.until.Load() != 0 && s.until.Swap(0) != 0 {
		s.probe.Store(0)
		return Recovered
	}
	return Unchanged
}

// Tracker holds the health of every upstream proxyto has reason to track.
// Build it with New; it is safe for concurrent use.
type Tracker struct {
	ejectAfter int
	ejectFor   time.Duration
	now        func() int64
	seed       maphash.Seed

	routes atomic.Pointer[map[Key]*State] // route entries, replaced by Retain

	// lists holds upstreams from X-Proxy-To lists: a set-associative table
	// of immutable-key States, like auth's verdict cache. Only upstreams
	// that failed recently are in it.
	lists []atomic.Pointer[State]
	mask  uint64
}

// ways is how many neighbouring slots one key may live in.
const ways = 4

// New returns a Tracker with cfg's settings.
func New(cfg Config) *Tracker {
	t := &Tracker{
		ejectAfter: cfg.EjectAfter,
		ejectFor:   cfg.EjectFor,
		now:        cfg.Now,
		seed:       maphash.MakeSeed(),
	}
	if t.ejectAfter <= 0 {
		t.ejectAfter = 3
	}
	if t.ejectFor <= 0 {
		t.ejectFor = 30 * time.Second
	}
	if t.now == nil {
		start := time.Now()
		t.now = func() int64 { return int64(time.Since(start)) }
	}
	size := cfg.MaxTracked
	if size <= 0 {
		size = 4096
	}
	n := ways
	for n < size {
		n <<= 1
	}
	t.lists = make([]atomic.Pointer[State], n)
	t.mask = uint64(n - 1)
	empty := map[Key]*State{}
	t.routes.Store(&empty)
	return t
}

// Now returns the Tracker's clock, in nanoseconds, for Status, Order and
// Route.Pick.
func (t *Tracker) Now() int64 { return t.now() }

// EjectFor returns the configured cool-down.
func (t *Tracker) EjectFor() time.Duration { return t.ejectFor }

// Key returns u's identity. It does not allocate.
func (t *Tracker) Key(u *httpparse.Upstream) Key {
	var h maphash.Hash
	h.SetSeed(t.seed)
	var head [4]byte
	head[0] = byte(u.Scheme)
	binary.LittleEndian.PutUint16(head[1:3], u.Port)
	if u.HasAuth {
		head[3] = 1
	}
	h.Write(head[:])
	for _, c := range u.Host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h.WriteByte(c)
	}
	// Lengths keep ("ab","c") and ("a","bc") apart.
	var n [4]byte
	binary.LittleEndian.PutUint16(n[0:2], uint16(len(u.User)))
	binary.LittleEndian.PutUint16(n[2:4], uint16(len(u.Pass)))
	h.Write(n[:])
	h.Write(u.User)
	h.Write(u.Pass)
	return Key(h.Sum64())
}

// Lookup returns the state of k, or nil (healthy, no history). It never
// blocks or allocates.
func (t *Tracker) Lookup(k Key) *State {
	if s := (*t.routes.Load())[k]; s != nil {
		return s
	}
	base := uint64(k)
	for i := range uint64(ways) {
		if s := t.lists[(base+i)&t.mask].Load(); s != nil && s.key == k {
			return s
		}
	}
	return nil
}

// States writes the state of each key into dst (nil for none) and returns
// dst[:len(keys)]; dst must be at least as long as keys.
func (t *Tracker) States(dst []*State, keys []Key) []*State {
	dst = dst[:len(keys)]
	for i, k := range keys {
		dst[i] = t.Lookup(k)
	}
	return dst
}

// Report records the outcome of one attempt at upstream k: ok is false for a
// failure that counts (see Counts). It never blocks. A success costs one
// lookup and no write when the upstream was healthy; the first failure of an
// upstream that has no state allocates it, so failures are best reported
// from the dial workers (a handshake failure on the loop pays that once).
func (t *Tracker) Report(k Key, ok bool) Transition {
	s := t.Lookup(k)
	if ok {
		if s == nil {
			return Unchanged
		}
		tr := s.succeed()
		t.forget(s)
		return tr
	}
	now := t.now()
	if s == nil {
		s = t.track(k)
	}
	return s.fail(now)
}

// track returns the list state of k, adding one when there is none: in an
// empty slot of k's set, or in place of the stalest entry there.
func (t *Tracker) track(k Key) *State {
	fresh := &State{key: k, t: t}
	base := uint64(k)
	for {
		var victim *State
		slot := -1
		for i := range uint64(ways) {
			j := int((base + i) & t.mask)
			s := t.lists[j].Load()
			switch {
			case s != nil && s.key == k:
				return s
			case s == nil:
				if slot < 0 || victim != nil {
					victim, slot = nil, j
				}
			case slot < 0 || victim != nil && t.staler(s, victim):
				victim, slot = s, j
			}
		}
		if t.lists[slot].CompareAndSwap(victim, fresh) {
			return fresh
		}
		// Another worker changed the set: look again (it may have added k).
	}
}

// staler reports whether a should be evicted before b: ejected upstreams
// go last, then the one whose last failure is oldest.
func (t *Tracker) staler(a, b *State) bool {
	ae, be := a.IsEjected(), b.IsEjected()
	if ae != be {
		return !ae
	}
	return a.last.Load() < b.last.Load()
}

// forget drops a list state that is back to healthy, making room; route
// states are kept.
func (t *Tracker) forget(s *State) {
	if s.IsEjected() || s.fails.Load() != 0 {
		return
	}
	base := uint64(s.key)
	for i := range uint64(ways) {
		if t.lists[(base+i)&t.mask].CompareAndSwap(s, nil) {
			return
		}
	}
}

// Retain makes keys the route entries' set, returning their states in the
// same order: a key that already had state (from the previous routes or a
// failing X-Proxy-To list) keeps it, so an upstream that stays in the routes
// file across a reload stays ejected or healthy as it was. States of keys no
// longer named are dropped. Call it from one goroutine at a time (a reload).
func (t *Tracker) Retain(keys []Key) []*State {
	old := *t.routes.Load()
	next := make(map[Key]*State, len(keys))
	out := make([]*State, len(keys))
	for i, k := range keys {
		s := next[k]
		if s == nil {
			s = old[k]
		}
		if s == nil {
			s = t.unlist(k)
		}
		if s == nil {
			s = &State{key: k, t: t}
		}
		next[k] = s
		out[i] = s
	}
	t.routes.Store(&next)
	return out
}

// unlist removes k's X-Proxy-To list state, if any, and returns it.
func (t *Tracker) unlist(k Key) *State {
	base := uint64(k)
	for i := range uint64(ways) {
		slot := &t.lists[(base+i)&t.mask]
		if s := slot.Load(); s != nil && s.key == k && slot.CompareAndSwap(s, nil) {
			return s
		}
	}
	return nil
}

// Ejected returns how many tracked upstreams (route entries and X-Proxy-To
// list entries) are out of service now. It walks the whole table: call it
// at scrape time, not per request.
func (t *Tracker) Ejected() int {
	n := 0
	for _, s := range *t.routes.Load() {
		if s.IsEjected() {
			n++
		}
	}
	for i := range t.lists {
		if s := t.lists[i].Load(); s.IsEjected() {
			n++
		}
	}
	return n
}

// Order writes into dst the indices of the upstreams to try, in order, given
// their states and the strategy's rotation: start, start+1, … (mod
// len(states)). Healthy upstreams come in rotation order; an ejected one is
// skipped; a half-open one is tried (its probe claimed) only when nothing
// before it was chosen, so the probe goes to a request that would have used
// it first. When nothing is chosen, every upstream is returned in index
// order. At most len(dst) indices are written; it returns dst[:n]. It never
// blocks or allocates.
func Order(dst []int, states []*State, start int, now int64) []int {
	n, k := len(states), 0
	if n == 0 || len(dst) == 0 {
		return dst[:0]
	}
	i := start % n
	for range n {
		if k == len(dst) {
			break
		}
		switch states[i].Status(now) {
		case Healthy:
			dst[k] = i
			k++
		case HalfOpen:
			if k == 0 && states[i].ClaimProbe(now) {
				dst[k] = i
				k++
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	if k == 0 {
		return AllInOrder(dst, n)
	}
	return dst[:k]
}

// AllInOrder writes 0, 1, … into dst, at most n of them: the order in which
// upstreams are tried when every one is ejected.
func AllInOrder(dst []int, n int) []int {
	k := min(n, len(dst))
	for i := range k {
		dst[i] = i
	}
	return dst[:k]
}

// Counts reports whether an attempt that failed with t (and, for an upstream
// that answered CONNECT with an error status, that status) counts against
// the upstream's health: failures to reach it or to complete the handshake
// (name resolution, refused, reset, timeouts, TLS, a malformed answer, a 5xx
// to CONNECT). Refusals by proxyto's own rules, a 407 (wrong credentials are
// configuration, not health) and a non-5xx answer do not count.
func Counts(t proxystatus.Type, received int) bool {
	switch t {
	case proxystatus.DNSError, proxystatus.ConnectionRefused, proxystatus.ConnectionTerminated,
		proxystatus.ConnectionTimeout, proxystatus.HTTPResponseTimeout,
		proxystatus.TLSProtocolError, proxystatus.TLSCertificateError, proxystatus.HTTPResponseError:
		return true
	case proxystatus.DestinationUnavailable:
		return received >= 500
	}
	return false
}

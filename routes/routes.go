// Package routes holds proxyto's named upstream groups: the routes file
// (YAML), the immutable table loaded from it, the holder the event loops read
// it through, the grammar by which a request names a route and a session,
// and the strategies that order a route's upstreams for one request.
//
// A request selects a route by "X-Proxy-To: @name", or through the username
// of its Proxy-Authorization ("alice-route-residential-session-s42"), or
// falls back to the file's default_route. Everything a request does here runs
// on an event loop: one atomic load for the table, one map lookup by a byte
// slice, a username scan over slices, and a pick that writes entry indices
// into the caller's slice. Nothing allocates.
//
//	reload (SIGHUP, cmd)                 request (event loop)
//	────────────────────────────────     ───────────────────────────────────
//	t, err := Load(path)                 tab := holder.Table()
//	holder.Store(t)  (on error keep      name, ok := RouteRef(xProxyTo)
//	  the old table: Holder.Reload)      sel, err := ParseUsername(user)
//	  ├ stable metric IDs per name       r, err := tab.Select(name, sel.Route)
//	  └ health.Tracker.Retain(keys)      order := r.Pick(idx[:], session, now)
//	                                     r.Upstream(order[i]), r.Key(order[i])
package routes

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"

	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
)

// Strategy is how a route orders its upstreams for a request.
type Strategy uint8

// The strategies a routes file may name.
const (
	// Failover tries the upstreams in file order, as an X-Proxy-To list.
	Failover Strategy = iota
	// RoundRobin starts each request at the next upstream in turn.
	RoundRobin
	// Random starts each request at a uniformly random upstream.
	Random
	// Sticky sends every request with the same session key to the same
	// upstream (rendezvous hashing), and requests without a key round-robin.
	Sticky
	numStrategies
)

// strategyNames is the one table of strategy names, as written in the file.
var strategyNames = [numStrategies]string{
	Failover:   "failover",
	RoundRobin: "round-robin",
	Random:     "random",
	Sticky:     "sticky",
}

// String returns the strategy's name as written in the routes file.
func (s Strategy) String() string {
	if s < numStrategies {
		return strategyNames[s]
	}
	return "unknown"
}

// Errors a request's route selection can fail with. The engine answers each
// with 400 http_request_error (see SelectError.Response). None holds bytes of
// the request.
var (
	// ErrUnknownRoute occurs when a request names a route ("@name" in
	// X-Proxy-To or "-route-name" in its username) that the routes file does
	// not define, or when no routes file is loaded.
	ErrUnknownRoute = errors.New("proxyto: unknown route")
	// ErrBadUsername occurs when a Proxy-Authorization username has an empty
	// "-route-" or "-session-" value, names either twice, or has a session
	// key that is too long or holds a control byte.
	ErrBadUsername = errors.New("proxyto: malformed route or session in username")
	// ErrBadSession occurs when an X-Proxy-Session value is empty, longer
	// than MaxSessionLen or holds a control byte.
	ErrBadSession = errors.New("proxyto: malformed X-Proxy-Session")
)

// SelectError is the error of a failed route selection: Err is one of the
// sentinels above. The package returns preallocated values, so a failure
// costs no allocation either.
type SelectError struct {
	Err      error
	response proxystatus.Error
}

// Error returns the sentinel's message.
func (e *SelectError) Error() string { return e.Err.Error() }

// Unwrap returns the sentinel, for errors.Is.
func (e *SelectError) Unwrap() error { return e.Err }

// Response is the answer the engine sends: 400 with Proxy-Status
// http_request_error and a detail line that holds no request bytes. It is
// shared: do not modify it.
func (e *SelectError) Response() *proxystatus.Error { return &e.response }

func newSelectError(err error, detail string) *SelectError {
	return &SelectError{Err: err, response: proxystatus.Error{Type: proxystatus.HTTPRequestError, Detail: detail}}
}

var (
	errUnknownRoute = newSelectError(ErrUnknownRoute, "unknown route")
	errBadUsername  = newSelectError(ErrBadUsername, "malformed route or session in proxy username")
	errBadSession   = newSelectError(ErrBadSession, "malformed X-Proxy-Session")
)

// Table is one loaded routes file. It is immutable once a Holder stored it,
// and safe for concurrent use.
type Table struct {
	routes []*Route // sorted by name
	byName map[string]*Route
	def    *Route // default_route, or nil

	stored atomic.Bool // set by Holder.Store, which binds it exactly once
}

// Routes returns the routes, sorted by name. Do not modify the slice.
func (t *Table) Routes() []*Route { return t.routes }

// Default returns the default_route, or nil when the file names none.
func (t *Table) Default() *Route { return t.def }

// Lookup returns the route called name. A nil *Table has no routes. It does
// not allocate.
func (t *Table) Lookup(name []byte) (*Route, error) {
	if t != nil {
		if r := t.byName[string(name)]; r != nil {
			return r, nil
		}
	}
	return nil, errUnknownRoute
}

// Select returns the route a request selects: the one ref names ("@name" in
// X-Proxy-To, see RouteRef) if ref is not nil, else the one its username
// names (Selection.Route) if not empty, else the default route. The route
// is nil, with a nil error, when the request names none and there is no
// default: the request then needs an upstream of its own. A named route that
// does not exist is a *SelectError (ErrUnknownRoute).
func (t *Table) Select(ref, userRoute []byte) (*Route, error) {
	switch {
	case ref != nil:
		return t.Lookup(ref)
	case len(userRoute) > 0:
		return t.Lookup(userRoute)
	case t == nil:
		return nil, nil
	}
	return t.def, nil
}

// Route is one named group of upstreams. It is immutable but for its
// round-robin counter, and safe for concurrent use.
type Route struct {
	name     string
	id       int
	strategy Strategy
	ups      []httpparse.Upstream // byte slices owned by the route
	hrw      []uint64             // per entry: stable hash for rendezvous
	keys     []health.Key         // per entry: health identity, set by Holder.Store
	states   []*health.State      // per entry: health, set by Holder.Store
	rr       atomic.Uint64
}

// Name returns the route's name as written in the file.
func (r *Route) Name() string { return r.name }

// ID returns a small integer naming the route for metrics: stable for a
// name across every table stored in the same Holder, dense from 0, so that
// counters can live in a slice indexed by it (see Holder.Names).
func (r *Route) ID() int { return r.id }

// Strategy returns the route's strategy.
func (r *Route) Strategy() Strategy { return r.strategy }

// Len returns the number of upstreams.
func (r *Route) Len() int { return len(r.ups) }

// Upstream returns entry i. Its byte slices belong to the route: read them,
// never modify them. They stay valid as long as the caller holds the route
// (a reload builds new routes; it never changes this one).
func (r *Route) Upstream(i int) *httpparse.Upstream { return &r.ups[i] }

// Key returns entry i's health identity, for health.Tracker.Report.
func (r *Route) Key(i int) health.Key { return r.keys[i] }

// State returns entry i's health state (nil before the route is stored).
func (r *Route) State(i int) *health.State { return r.states[i] }

// Ejected returns how many of the route's upstreams are out of service.
func (r *Route) Ejected() int {
	n := 0
	for _, s := range r.states {
		if s.IsEjected() {
			n++
		}
	}
	return n
}

// Pick writes into dst the indices of the entries one request tries, in
// order, and returns dst[:n]; n is at most len(dst) (the engine bounds a
// request's attempts by the size of the slice it passes). session is the
// request's session key (X-Proxy-Session or "-session-"), used by Sticky
// only; now is the health clock (health.Tracker.Now).
//
// The strategy gives the order; health filters it (health.Order): ejected
// entries are skipped, a half-open entry is tried by the one request that
// would have used it first, and when every entry is ejected all are tried in
// file order. Pick never blocks or allocates.
func (r *Route) Pick(dst []int, session []byte, now int64) []int {
	n := len(r.ups)
	if n == 0 {
		return dst[:0]
	}
	switch r.strategy {
	case RoundRobin:
		return health.Order(dst, r.states, r.next(n), now)
	case Random:
		return health.Order(dst, r.states, rand.IntN(n), now)
	case Sticky:
		if len(session) == 0 {
			return health.Order(dst, r.states, r.next(n), now)
		}
		return r.sticky(dst, sessionHash(session), now)
	}
	return health.Order(dst, r.states, 0, now)
}

// next returns the round-robin start for one request.
func (r *Route) next(n int) int {
	return int((r.rr.Add(1) - 1) % uint64(n))
}

// maxSticky bounds the entries a sticky pick orders: its scores live on the
// stack. A request tries far fewer upstreams than this.
const maxSticky = 16

// sticky orders the entries by rendezvous (highest random weight) hashing:
// each entry scores score(key, entry) and the highest-scoring entries come
// first. Every replica computes the same scores, so all of them send a key
// to the same upstream; when that upstream is ejected, its keys move to
// their second choice and no other key moves. One pass keeps the best
// min(len(dst), maxSticky) healthy entries, sorted, in dst.
func (r *Route) sticky(dst []int, key uint64, now int64) []int {
	k, cnt := min(len(dst), maxSticky), 0
	if k == 0 {
		return dst[:0]
	}
	var scores [maxSticky]uint64 // scores[j] is dst[j]'s
	// top is the best entry not cooling down: if it is half-open, this
	// request is the one that probes it. Once dst is full, an entry scoring
	// no more than dst[k-1] can be neither kept nor top (top scores at
	// least as much as any kept entry), so most entries cost one score and
	// one comparison.
	top, topScore := -1, uint64(0)
	for i := range r.ups {
		sc := score(key, r.hrw[i])
		if cnt == k && sc <= scores[k-1] {
			continue
		}
		st := r.states[i].Status(now)
		if st == health.Ejected {
			continue
		}
		if top < 0 || sc > topScore {
			top, topScore = i, sc
		}
		if st != health.Healthy || cnt == k && sc <= scores[k-1] {
			continue
		}
		j := cnt
		if cnt < k {
			cnt++
		} else {
			j = k - 1
		}
		for j > 0 && scores[j-1] < sc {
			dst[j], scores[j] = dst[j-1], scores[j-1]
			j--
		}
		dst[j], scores[j] = i, sc
	}
	if top >= 0 && r.states[top].Status(now) == health.HalfOpen && r.states[top].ClaimProbe(now) {
		if cnt < k {
			cnt++
		}
		copy(dst[1:cnt], dst[:cnt-1])
		dst[0] = top
	}
	if cnt == 0 {
		return health.AllInOrder(dst, len(r.ups))
	}
	return dst[:cnt]
}

// FNV-1a, 64-bit: the session and entry hashes must be the same in every
// replica and every release, so they use a fixed, specified function rather
// than a seeded one.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// sessionHash hashes a session key.
func sessionHash(key []byte) uint64 { return fmix64(fnvAdd(fnvOffset, key)) }

// entryHash hashes an entry's identity (scheme, case-folded host, port,
// credentials): two entries that differ only in credentials, as vendor
// gateways are often listed, still score differently.
func entryHash(u *httpparse.Upstream) uint64 {
	h := uint64(fnvOffset)
	h = fnvAdd(h, []byte{byte(u.Scheme), byte(u.Port >> 8), byte(u.Port)})
	for _, c := range u.Host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = fnvAdd(h, []byte{c})
	}
	if u.HasAuth {
		h = fnvAdd(h, []byte{0, byte(len(u.User)), byte(len(u.User) >> 8)})
		h = fnvAdd(h, u.User)
		h = fnvAdd(h, []byte{0})
		h = fnvAdd(h, u.Pass)
	}
	// Spread once here what score would otherwise spread per request.
	h = fmix64(h)
	return bits.RotateLeft64(h, 31) ^ h*0x9e3779b97f4a7c15
}

// score is the rendezvous weight of an entry for a key: the MurmurHash3
// finalizer of the key's hash combined with the entry's (entryHash), so
// that a key's ranking of the entries is an independent random permutation.
func score(key, entry uint64) uint64 { return fmix64(key ^ entry) }

// fmix64 is MurmurHash3's 64-bit finalizer: every input bit affects every
// output bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

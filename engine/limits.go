package engine

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/proxystatus"
)

// limiter enforces the connection caps and the per-IP request rate. Its
// methods are safe for concurrent use; the map is touched once per
// connection and, only when a rate is set, once per request.
type limiter struct {
	maxConns, maxPerIP int
	rate               float64
	burst              float64

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]*ipState
}

// ipState is one client address: its open connections and its token
// bucket. An entry outlives the address's connections while its bucket is
// not full again, so reconnecting does not reset the rate.
type ipState struct {
	conns  int
	tokens float64
	last   time.Time
}

func (l *limiter) init(cfg Config) {
	l.maxConns, l.maxPerIP = cfg.MaxConns, cfg.MaxConnsPerIP
	l.rate, l.burst = cfg.RatePerIP, float64(cfg.RateBurst)
	l.perIP = make(map[netip.Addr]*ipState)
}

// admit counts a new connection from ip, or says which limit refuses it.
func (l *limiter) admit(ip netip.Addr) (LimitReason, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConns > 0 && l.total >= l.maxConns {
		return LimitConns, false
	}
	st := l.perIP[ip]
	if l.maxPerIP > 0 && st != nil && st.conns >= l.maxPerIP {
		return LimitConnsPerIP, false
	}
	if st == nil {
		st = &ipState{tokens: l.burst, last: time.Now()}
		l.perIP[ip] = st
	}
	st.conns++
	l.total++
	return 0, true
}

// release uncounts a connection admitted for ip.
func (l *limiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.perIP[ip]
	if st == nil {
		return
	}
	st.conns--
	l.total--
	if st.conns <= 0 && l.rate <= 0 {
		delete(l.perIP, ip)
	}
}

// allowRequest takes one token from ip's bucket when a rate is set.
func (l *limiter) allowRequest(ip netip.Addr) bool {
	if l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.perIP[ip]
	if st == nil {
		st = &ipState{tokens: l.burst, last: time.Now()}
		l.perIP[ip] = st
	}
	now := time.Now()
	st.tokens += now.Sub(st.last).Seconds() * l.rate
	st.last = now
	if st.tokens > l.burst {
		st.tokens = l.burst
	}
	if st.tokens < 1 {
		return false
	}
	st.tokens--
	return true
}

// sweep forgets addresses with no connection whose bucket has refilled.
// The ticker calls it every few seconds when a rate is set.
func (l *limiter) sweep(now time.Time) {
	if l.rate <= 0 {
		return
	}
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, st := range l.perIP {
		if st.conns <= 0 && now.Sub(st.last) >= full {
			delete(l.perIP, ip)
		}
	}
}

// The descriptor budget. gnet stops its event loops, and so the whole
// process, when accept fails for want of a descriptor, so proxyto must
// refuse connections well before that: each client connection takes its
// descriptors from the budget when it opens (fdsPlain, or fdsTLS) and gives
// them back when it and its upstream are gone, and a reserve covers what
// else holds descriptors: listeners, event loops, dials in progress (a dial
// holds two for a moment), TLS handshakes, the splice path's pipes and
// duplicates. Idle pooled connections are kept only while the budget has
// room, and give way to clients.
type fdBudget struct {
	limit   int // RLIMIT_NOFILE (soft; Go raises it to the hard limit at start)
	reserve int
	used    atomic.Int64 // taken by open client connections
	pooled  atomic.Int64 // idle pooled upstream connections, all loops
}

// A client connection's descriptors: a plain one is its socket and its
// upstream's; one from the TLS listener is its socket, the two ends of its
// bridge's socketpair, and its upstream's.
const (
	fdsPlain = 2
	fdsTLS   = 4
)

// tlsHandshakes bounds the TLS listener's connections between accept and
// hand-over, each holding a descriptor (three while handed over).
const tlsHandshakes = 256

// init reads the limit and sizes the reserve for loops event loops.
func (b *fdBudget) init(cfg Config, loops int) {
	var rl unix.Rlimit
	b.limit = 1 << 20
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < uint64(b.limit) {
		b.limit = int(rl.Cur)
	}
	// 64 fixed; per loop, 64 pipes and 64 spliced tunnels' duplicates
	// (tunnel.Config.SplicePipes, and the splice path's tunnel bound);
	// the extra descriptor of dials in progress.
	b.reserve = 64 + loops*4*64 + min(cfg.DialWorkers, 256)
	if cfg.TLSListen != "" {
		b.reserve += 3 * tlsHandshakes
	}
	if b.reserve > b.limit/2 {
		b.reserve = b.limit / 2 // a small limit (tests): keep half for connections
	}
}

// conns is how many plain client connections the budget admits.
func (b *fdBudget) conns() int { return max(1, (b.limit-b.reserve)/fdsPlain) }

// take claims n descriptors for a client connection, or reports that the
// budget has no room for them. Idle pooled connections do not count: the
// pool gives way (mayPool), and closes its idle connections as they expire.
func (b *fdBudget) take(n int) bool {
	if b.used.Add(int64(n)) > int64(b.limit-b.reserve) {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// put returns what take claimed.
func (b *fdBudget) put(n int) { b.used.Add(-int64(n)) }

// mayPool reports whether one more idle connection fits beside the clients'.
func (b *fdBudget) mayPool() bool {
	return b.used.Load()+b.pooled.Load()+1 <= int64(b.limit-b.reserve)
}

// limitResponse is the answer to a connection refused by a limit.
func limitResponse(r LimitReason) []byte {
	if r == LimitDraining {
		return proxystatus.AppendResponse(nil, proxystatus.New(proxystatus.ProxyInternalResponse, "proxyto is shutting down"), "")
	}
	detail := "connection limit reached"
	if r == LimitConnsPerIP {
		detail = "connection limit per client address reached"
	}
	return proxystatus.AppendResponse(nil, &proxystatus.Error{Type: proxystatus.ConnectionLimitReached, Status: 429, Detail: detail}, "Retry-After: 1\r\n")
}

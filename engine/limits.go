package engine

import (
	"net/netip"
	"sync"
	"time"

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

package engine

import (
	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/proxystatus"
)

// Passive health: each attempt at an upstream reports how it ended, once,
// where that becomes known (docs/routes.md, "Passive health"):
//
//	dial worker      a failed dial (DNS, refused, timeout, TLS)
//	tunnel.go        the CONNECT or SOCKS5 answer, or its failure
//	forward.go       the SOCKS5 answer; on a fresh connection, the response
//	                 head (an answer), or the upstream closing without one
//
// A pooled connection reports nothing: it proved the upstream already, and
// the steady state stays free of health work. A plain request's response
// timeout or malformed response is not reported either: both may be the
// origin's doing, and a client must not be able to eject an upstream that
// other clients share by sending it to a bad origin.

// countsAgainst reports whether an attempt that failed with pe counts
// against the upstream's health: health.Counts, except a 502 or 504 answer
// to CONNECT. Those say the upstream could not reach or hear from the
// client's target (RFC 9110 §15.6.3, §15.6.5): it works, and counting them
// would let any client eject a shared upstream by asking for dead targets.
// A 500, 503 or other 5xx is the upstream's own failure and counts.
func countsAgainst(pe *proxystatus.Error) bool {
	if pe.Received == 502 || pe.Received == 504 {
		return false
	}
	return health.Counts(pe.Type, pe.Received)
}

// report records one attempt's outcome at upstream k, and an ejection it
// caused, for the route (-1: an X-Proxy-To list). It may run on a loop or a
// dial worker.
func (e *Engine) report(k health.Key, route int, ok bool) {
	if e.health.Report(k, ok) == health.NowEjected {
		e.cfg.Observer.UpstreamEjected(route)
	}
}

// reportAttempt records how attempt k of ups ended once the upstream had
// its bytes: pe is nil for an answer, else the failure. A failure that does
// not count (a 407, a 4xx, a 502 for a dead target) still shows an upstream
// that answers, so it counts as a success.
func (ls *loopState) reportAttempt(ups *upstreams, k int, pe *proxystatus.Error) {
	if ups.n == 0 || k >= ups.n {
		return // released already
	}
	ls.e.report(ups.key(ls.e.health, k), ups.routeID(), pe == nil || !countsAgainst(pe))
}

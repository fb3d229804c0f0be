package engine

import (
	"fmt"
	"testing"
)

// The engine's state machines: a client connection (clientState), a tunnel
// (tunnelState) and a plain-HTTP exchange (httpState). Each has one table of
// legal transitions, checked by its setState. An illegal transition is a
// bug: it panics in tests, and in production it is logged and the
// connection aborted. docs/ARCHITECTURE.md draws the three machines.

// clientState is where a client connection is in its life.
type clientState uint8

const (
	// cReadingHead: waiting for a request head (idle between requests, or
	// part of one arrived). Where a connection starts, unless its peer must
	// send a PROXY protocol header.
	cReadingHead clientState = iota
	// cAwaitingProxy [transient]: a connection from a peer in ProxyPeers
	// (a load balancer) waits for its PROXY protocol header, within the
	// client header timeout from accept. It is not admitted by the limits
	// yet: they count the client the header names. A connection starts
	// here or in cReadingHead.
	cAwaitingProxy
	// cExchange: an exchange (a tunnel or a plain-HTTP request) owns the
	// connection.
	cExchange
	// cFlushing [transient]: the last answer is queued; the connection
	// closes once gnet has sent it.
	cFlushing
	// cLinger [transient]: FIN sent after an answer; what the client still
	// sends is read and dropped until it closes (or a second passed), so
	// that closing does not reset the answer away.
	cLinger
	// cClosed: gnet closed the connection. A tunnel may outlive it (a
	// half-closed client).
	cClosed
	numClientStates
)

var clientStateNames = [numClientStates]string{"reading-head", "awaiting-proxy", "exchange", "flushing", "linger", "closed"}

func (s clientState) String() string { return clientStateNames[s] }

// clientNext lists the legal transitions of a client connection.
var clientNext = [numClientStates]uint32{
	cReadingHead: bits(cExchange, cLinger, cClosed),
	// A header accepted: its client's first request; refused by a limit:
	// answered 429; anything else closes without a word.
	cAwaitingProxy: bits(cReadingHead, cLinger, cClosed),
	cExchange:      bits(cReadingHead, cFlushing, cLinger, cClosed),
	cFlushing:      bits(cLinger, cClosed),
	cLinger:        bits(cClosed),
	cClosed:        0,
}

// tunnelState is where a tunnel (a CONNECT, or a request upgraded after
// 101) is.
type tunnelState uint8

const (
	// tNew: created; a CONNECT dials, an upgrade starts relaying at once.
	tNew tunnelState = iota
	// tDialing [transient]: the dial pool resolves and connects the
	// upstream off the loop; the client's reads are masked.
	tDialing
	// tHandshake [transient]: CONNECT or the SOCKS5 greeting was sent;
	// waiting for the upstream's answer.
	tHandshake
	// tRelaying: the relay moves bytes both ways.
	tRelaying
	// tFailed [transient]: answered with an error (or the client left);
	// the connections are closing.
	tFailed
	// tDone: both connections closed; the tunnel is gone.
	tDone
	numTunnelStates
)

var tunnelStateNames = [numTunnelStates]string{"new", "dialing", "handshake", "relaying", "failed", "done"}

func (s tunnelState) String() string { return tunnelStateNames[s] }

// tunnelNext lists the legal transitions of a tunnel.
var tunnelNext = [numTunnelStates]uint32{
	tNew:       bits(tDialing, tRelaying),
	tDialing:   bits(tHandshake, tFailed),
	tHandshake: bits(tRelaying, tFailed),
	tRelaying:  bits(tDone),
	tFailed:    bits(tDone),
	tDone:      0,
}

// httpState is where a plain-HTTP exchange is.
type httpState uint8

const (
	// hIdle: no exchange (between requests).
	hIdle httpState = iota
	// hDialing [transient]: no pooled connection; the dial pool connects
	// one off the loop.
	hDialing
	// hHandshake [transient]: the SOCKS5 exchange runs before the head.
	hHandshake
	// hSending: the head was sent; the request body streams; waiting for
	// the response head.
	hSending
	// hStreaming: the response head was forwarded; its body streams (the
	// request body may still be streaming).
	hStreaming
	// hUpgraded [transient]: a 101 made the connection a tunnel.
	hUpgraded
	// hDone [transient]: complete; the client connection takes over.
	hDone
	// hFailed [transient]: answered with an error, or closed once response
	// bytes had been sent.
	hFailed
	numHTTPStates
)

var httpStateNames = [numHTTPStates]string{"idle", "dialing", "handshake", "sending", "streaming", "upgraded", "done", "failed"}

func (s httpState) String() string { return httpStateNames[s] }

// httpNext lists the legal transitions of a plain-HTTP exchange. A reused
// upstream connection that failed before any response byte goes back to
// dialing (hSending → hDialing), once.
var httpNext = [numHTTPStates]uint32{
	hIdle:      bits(hDialing, hSending, hFailed),
	hDialing:   bits(hHandshake, hSending, hFailed),
	hHandshake: bits(hSending, hFailed),
	hSending:   bits(hStreaming, hDialing, hUpgraded, hFailed),
	hStreaming: bits(hDone, hFailed),
	hUpgraded:  bits(hIdle),
	hDone:      bits(hIdle),
	hFailed:    bits(hIdle),
}

// bits is a set of states for a transition table.
func bits[S ~uint8](states ...S) uint32 {
	var m uint32
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// legal reports whether next lists to.
func legal[S ~uint8](next []uint32, from, to S) bool { return next[from]&(1<<to) != 0 }

// illegalTransition reports a transition no table lists: a bug in the
// engine. Tests panic; production logs it, and the caller aborts the
// connection.
func (e *Engine) illegalTransition(machine string, from, to fmt.Stringer) {
	msg := fmt.Sprintf("proxyto: illegal %s transition %v → %v", machine, from, to)
	if testing.Testing() {
		panic(msg)
	}
	e.logf("%s (connection aborted)", msg)
}

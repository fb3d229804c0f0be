package engine

import (
	"net/netip"
	"time"

	"github.com/proxyto/proxyto/compression"
	"github.com/proxyto/proxyto/proxystatus"
)

// Kind says what one access record describes.
type Kind uint8

// The kinds of exchange proxyto carries.
const (
	KindHTTP    Kind = iota // a forwarded plain-HTTP request
	KindConnect             // a CONNECT tunnel
	KindUpgrade             // a request that became a byte relay after 101
	NumKinds
)

// String names the kind for logs and metric labels.
func (k Kind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindUpgrade:
		return "upgrade"
	}
	return "http"
}

// LimitReason says which limit refused a client.
type LimitReason uint8

// The limits that can refuse a client.
const (
	LimitConns      LimitReason = iota // MaxConns reached
	LimitConnsPerIP                    // MaxConnsPerIP reached
	LimitRate                          // RatePerIP exceeded
	LimitDraining                      // the process is draining
	NumLimitReasons
)

// String names the reason for metric labels.
func (r LimitReason) String() string {
	switch r {
	case LimitConns:
		return "conns"
	case LimitConnsPerIP:
		return "conns_per_ip"
	case LimitRate:
		return "rate"
	}
	return "draining"
}

// ProxyFailure says why a connection from a peer that must send a PROXY
// protocol header (Config.ProxyPeers) was closed before its first request.
type ProxyFailure uint8

// The ways a PROXY protocol header can fail.
const (
	ProxyMissing    ProxyFailure = iota // the first bytes are not a PROXY header
	ProxyMalformed                      // a header that does not follow the protocol
	ProxyTooLong                        // a header over the parser's bounds
	ProxyTimeout                        // no complete header within the client header timeout
	ProxyIncomplete                     // the peer closed in the middle of the header
	NumProxyFailures
)

var proxyFailureNames = [NumProxyFailures]string{"missing", "malformed", "too_long", "timeout", "incomplete"}

// String names the failure for metric labels.
func (f ProxyFailure) String() string {
	if f >= NumProxyFailures {
		return "malformed"
	}
	return proxyFailureNames[f]
}

// Record is one access-log line: a forwarded request or a finished tunnel.
// The slices alias engine buffers and are valid only during Observer.Done; an
// observer that keeps anything must copy it. Nothing in it holds a credential.
type Record struct {
	Kind     Kind
	Client   netip.AddrPort
	Method   []byte
	Target   []byte // CONNECT authority or absolute URL, as the client sent it
	Upstream []byte // upstream proxy host:port, never its credentials
	Status   int    // status sent to the client; 0 if none was sent
	BytesIn  int64  // bytes from client to upstream, heads included
	BytesOut int64  // bytes from upstream to client, heads included
	Start    time.Time
	Duration time.Duration
	Error    proxystatus.Type
	Detail   string // one line, credential-free; empty on success
	// Route is the ID of the route the request selected
	// (routes.Route.ID, a name in routes.Holder.Names), or -1 when it went
	// through X-Proxy-To or --default-upstream.
	Route int
	// User is the ID of the client's authenticated user
	// (Authenticator.UserID), or -1: no client authentication, or a client
	// that failed it.
	User int
}

// Observer receives what the engine does, for logs and metrics. Methods are
// called on event loops, concurrently from several loops, so they must be
// safe for concurrent use, cheap and non-blocking.
type Observer interface {
	// ClientOpened and ClientClosed bracket every accepted client connection.
	ClientOpened()
	ClientClosed()
	// TunnelOpened and TunnelClosed bracket every established byte relay
	// (CONNECT or Upgrade).
	TunnelOpened()
	TunnelClosed()
	// UpstreamDialed reports one dial (DNS plus TCP connect) and its outcome.
	UpstreamDialed(d time.Duration, t proxystatus.Type)
	// UpstreamHandshake reports the time from the first byte sent to an
	// upstream to its response head (CONNECT reply, SOCKS reply or HTTP head).
	UpstreamHandshake(d time.Duration, t proxystatus.Type)
	// PoolUsed reports whether a plain-HTTP request found a pooled connection.
	PoolUsed(hit bool)
	// LimitRejected reports a client refused by a limit.
	LimitRejected(r LimitReason)
	// ProxyHeaderFailed reports a connection on the plain listener closed
	// because its trusted peer sent no valid PROXY protocol header (the
	// TLS listener reports its own through tlsfront.Observer).
	ProxyHeaderFailed(f ProxyFailure)
	// CompressionDecided reports, with Config.Compress, one plain-HTTP
	// response's verdict: compression.Compress when it is gzipped,
	// compression.Busy when the encoder pool was full, else the rule that
	// refused.
	CompressionDecided(r compression.Reason)
	// Relayed reports bytes moved in a tunnel or body, as they move:
	// up is client→upstream, down is upstream→client. route and user are
	// the exchange's, as in Record (-1 for none).
	Relayed(route, user, up, down int)
	// UpstreamEjected reports an upstream taken out of service by passive
	// health checks (health.NowEjected), with the ID of the route it
	// belongs to, or -1 for an X-Proxy-To list. It may run on a dial worker.
	UpstreamEjected(route int)
	// Done reports one finished request or tunnel.
	Done(r *Record)
}

// nopObserver is the Observer used when Config.Observer is nil.
type nopObserver struct{}

func (nopObserver) ClientOpened()                                     {}
func (nopObserver) ClientClosed()                                     {}
func (nopObserver) TunnelOpened()                                     {}
func (nopObserver) TunnelClosed()                                     {}
func (nopObserver) UpstreamDialed(time.Duration, proxystatus.Type)    {}
func (nopObserver) UpstreamHandshake(time.Duration, proxystatus.Type) {}
func (nopObserver) PoolUsed(bool)                                     {}
func (nopObserver) LimitRejected(LimitReason)                         {}
func (nopObserver) ProxyHeaderFailed(ProxyFailure)                    {}
func (nopObserver) CompressionDecided(compression.Reason)             {}
func (nopObserver) Relayed(int, int, int, int)                        {}
func (nopObserver) UpstreamEjected(int)                               {}
func (nopObserver) Done(*Record)                                      {}

package engine

import (
	"net/netip"
	"time"

	"github.com/proxyto/proxyto/dnscache"
	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/routes"
	"github.com/proxyto/proxyto/tlsfront"
)

// Config is everything the engine needs to run. cmd/proxyto fills it from flags;
// tests fill it directly. A zero field means the default its comment names.
// The drain's time limit is not here: it is the context given to Shutdown.
type Config struct {
	// Listen is the plain client listener address, "host:port". Default
	// ":8080"; with a TLSListen, empty means no plain listener.
	Listen string
	// ReusePort lets several processes share Listen (SO_REUSEPORT): the
	// kernel spreads new connections over all of them. Every process of the
	// group sets it. Default false: a port something already listens on
	// refuses to start.
	ReusePort bool
	// Loops is the number of gnet event loops. Default: the number of CPUs.
	Loops int

	// TLSListen is the TLS client listener address ("host:port"); empty:
	// none. Clients connect with TLS 1.2 or 1.3 and then speak as to
	// Listen. The handshake (after any PROXY header) must finish within
	// ClientHeaderTimeout. ReusePort applies to it too.
	TLSListen string
	// TLSCertFile and TLSKeyFile are the TLS listener's PEM certificate
	// chain (leaf first) and private key; required with TLSListen. New
	// fails when they do not load; ReloadTLS reads them again.
	TLSCertFile, TLSKeyFile string
	// TLSObserver hears of the TLS listener's handshakes and certificate
	// loads. nil: nothing.
	TLSObserver tlsfront.Observer

	// ProxyPeers are the peers (load balancers) that must open every
	// connection, on both listeners, with a PROXY protocol header (v1 or
	// v2, before the TLS handshake on the TLS listener). The address it
	// carries is then the client's for everything: per-IP limits and
	// rates, access records. v2 LOCAL and v1 UNKNOWN keep the peer's own.
	// A connection from such a peer without a valid header within
	// ClientHeaderTimeout is closed without an answer. The zero value
	// trusts no peer: a PROXY header is then a malformed request (400).
	ProxyPeers httpparse.ProxyPeers

	// Compress gzips plain-HTTP responses (never tunnels) for clients whose
	// Accept-Encoding allows it, when compression.Decide says so, as they
	// stream, with memory bounded by compression's encoder pool. Default
	// false.
	Compress bool

	// DialTimeout bounds DNS plus TCP connect to an upstream. Default 10s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the upstream's response head
	// after the request (or CONNECT) was sent. Default 30s.
	ResponseHeaderTimeout time.Duration
	// ClientHeaderTimeout bounds the wait for a client's complete request head,
	// counted from the first byte of that head. Default 10s.
	ClientHeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive client connection that sends nothing
	// between requests. Default 60s.
	IdleTimeout time.Duration
	// TunnelIdleTimeout closes a tunnel in which no byte moved either way.
	// Default 5m.
	TunnelIdleTimeout time.Duration
	// MaxHeaderBytes caps a request head (request line plus headers); a larger
	// one is answered 431. Default 64 KiB.
	MaxHeaderBytes int

	// DefaultUpstream is used when a request has no X-Proxy-To and selects
	// no route (a default_route of Routes comes first). Empty: such a
	// request is answered 400.
	DefaultUpstream string

	// Routes publishes the routes file's table: a request selects a route
	// with "X-Proxy-To: @name", with the username of its
	// Proxy-Authorization ("alice-route-name-session-key"), or gets the
	// file's default_route. Read with one atomic load per request; cmd
	// swaps the table on SIGHUP. nil: no routes file, "@name" is an unknown
	// route (400), and usernames are taken whole.
	Routes *routes.Holder
	// Health is the passive health of upstreams, route entries and
	// X-Proxy-To lists alike: failures before any byte of a request reached
	// an upstream eject it for a while. With Routes set it must be Routes'
	// tracker (routes.NewHolder's). nil: Routes' tracker when Routes is set,
	// else one with health's defaults (3 failures, 30s).
	Health *health.Tracker
	// Resolver resolves upstream names, and the targets proxyto resolves
	// for socks5 upstreams, off the event loops, through its cache. nil: a
	// dnscache.Resolver with its defaults (resolv.conf, TTLs clamped to
	// 1s..5m).
	Resolver *dnscache.Resolver

	// DialWorkers bounds the goroutines that dial upstreams (DNS and connect run
	// off the event loops). Default 512.
	DialWorkers int
	// RelayHighWater pauses reading a side whose peer has this many bytes queued
	// for writing. Default 256 KiB.
	RelayHighWater int
	// RelayLowWater resumes a paused side once its peer's queue fell to this.
	// Default 64 KiB.
	RelayLowWater int
	// SpliceAfter is how many bytes a tunnel direction moves in bulk (a run
	// of large reads) before the tunnel moves to splice(2), kernel to
	// kernel; it returns to the event loop after a second of quiet. 0 uses
	// the default, 256 KiB; negative keeps every tunnel in user space.
	SpliceAfter int

	// PoolIdleTimeout closes a pooled upstream connection unused this long.
	// Default 90s.
	PoolIdleTimeout time.Duration
	// PoolMaxIdlePerKey caps idle pooled connections per (upstream, credentials).
	// Default 16; negative disables pooling.
	PoolMaxIdlePerKey int

	// MaxConns caps concurrent client connections. 0, or a value the
	// descriptor limit cannot hold, means what that limit allows: about
	// half of RLIMIT_NOFILE less a reserve (see MaxConns on Engine), so
	// that accepting never runs out of descriptors.
	MaxConns int
	// MaxConnsPerIP caps concurrent client connections per client IP; 0 means no cap.
	MaxConnsPerIP int
	// RatePerIP limits new requests per second per client IP; 0 means no limit.
	RatePerIP float64
	// RateBurst is the token-bucket burst for RatePerIP. Default max(1, RatePerIP).
	RateBurst int

	// Auth checks clients' Proxy-Authorization; nil disables client
	// authentication.
	Auth Authenticator
	// AuthRealm names the realm in the 407 challenge. Default "proxyto".
	AuthRealm string

	// UpstreamCheck decides whether an upstream may be dialed, given its host
	// (as written) and the address it resolved to. nil allows all but the
	// built-in refusals (link-local, metadata, proxyto's own listeners).
	UpstreamCheck func(host string, addr netip.Addr) error
	// AllowLinkLocal lets upstreams on link-local and cloud-metadata addresses
	// through. Default false.
	AllowLinkLocal bool

	// InsecureUpstreamTLS skips certificate verification for https upstreams.
	InsecureUpstreamTLS bool
	// UpstreamCAFile adds PEM CA certificates to verify https upstreams against.
	UpstreamCAFile string

	// SelfAddrs are proxyto's other listeners (the admin address): an
	// X-Proxy-To naming one of them, Listen or TLSListen, is refused as a
	// loop (508).
	SelfAddrs []string

	// Logf receives rare operational messages: gnet's warnings and errors,
	// and engine bugs caught by a state table. It must be safe for
	// concurrent use. nil discards them.
	Logf func(format string, args ...any)

	// Observer receives events for logs and metrics. nil: nothing is observed.
	Observer Observer
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	d := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	i := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Listen == "" && c.TLSListen == "" {
		c.Listen = ":8080"
	}
	d(&c.DialTimeout, 10*time.Second)
	d(&c.ResponseHeaderTimeout, 30*time.Second)
	d(&c.ClientHeaderTimeout, 10*time.Second)
	d(&c.IdleTimeout, 60*time.Second)
	d(&c.TunnelIdleTimeout, 5*time.Minute)
	d(&c.PoolIdleTimeout, 90*time.Second)
	i(&c.MaxHeaderBytes, 64<<10)
	i(&c.DialWorkers, 512)
	i(&c.RelayHighWater, 256<<10)
	i(&c.RelayLowWater, 64<<10)
	i(&c.SpliceAfter, 256<<10)
	i(&c.PoolMaxIdlePerKey, 16)
	if c.RateBurst == 0 {
		c.RateBurst = int(c.RatePerIP)
		if c.RateBurst < 1 {
			c.RateBurst = 1
		}
	}
	if c.AuthRealm == "" {
		c.AuthRealm = "proxyto"
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}

// Authenticator checks the credentials of a client's Proxy-Authorization
// (HTTP Basic, decoded by the engine). With Routes set, user is the
// username's part before "-route-" or "-session-"; without, the whole
// username. auth.Basic and auth.Holder implement it. Implementations must
// be safe for concurrent use.
type Authenticator interface {
	// CachedUser returns a verdict without blocking when one is at hand (a
	// user list compared in constant time, or a remembered bcrypt result);
	// known is false when only VerifyUser can tell. It runs on an event
	// loop and must not keep the slices.
	CachedUser(user, pass []byte) (ok, known bool)
	// VerifyUser returns the verdict, and may block (bcrypt). It runs off
	// the event loops.
	VerifyUser(user, pass []byte) bool
	// UserID names a configured user for per-user metrics: a small,
	// stable integer, or -1 for a name no credential file has. It runs on
	// an event loop and must not allocate.
	UserID(user []byte) int
}

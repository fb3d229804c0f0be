package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/proxyto/proxyto/dnscache"
	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/observability"
	"github.com/proxyto/proxyto/routes"
)

// runCmd holds every flag of the gateway, in the groups --help shows them
// in (the order of first appearance). Defaults are the engine's; see
// engine.Config for what each one bounds.
type runCmd struct {
	Listen    string `group:"listeners" default:":8080" help:"Client listener address (plain TCP); empty disables it (then --tls-listen is needed)."`
	ReusePort bool   `group:"listeners" help:"Share --listen with other proxyto processes started with this flag (SO_REUSEPORT): the kernel spreads new connections over them. Without it, a port already in use refuses to start."`
	Admin     string `group:"listeners" default:"127.0.0.1:9090" help:"Admin listener address (/health, /ready, /metrics); empty disables it."`
	Loops     int    `group:"listeners" default:"0" help:"Event loops; 0 means one per CPU."`

	TLSListen         string   `group:"listeners" name:"tls-listen" help:"TLS client listener address: clients connect with TLS 1.2 or 1.3 (an \"HTTPS proxy\") and then speak as to --listen; empty disables it. Needs --tls-cert and --tls-key."`
	TLSCert           string   `group:"listeners" name:"tls-cert" help:"PEM certificate chain (leaf first) for --tls-listen; read again on SIGHUP." type:"existingfile"`
	TLSKey            string   `group:"listeners" name:"tls-key" help:"PEM private key of --tls-cert; read again on SIGHUP." type:"existingfile"`
	ProxyProtocolFrom []string `group:"listeners" name:"proxy-protocol-from" sep:"," help:"Peers (CIDR or IP; repeatable or comma-separated) that must open every connection, on both listeners, with a PROXY protocol v1 or v2 header; its address then counts as the client's. From other peers a PROXY header is a malformed request."`
	Compress          bool     `group:"listeners" help:"Gzip plain-HTTP responses for clients that accept it (text-like types, 1 KiB or more; never inside CONNECT tunnels)."`

	Default             string        `group:"upstream" name:"default-upstream" help:"Upstream used when a request has no X-Proxy-To and selects no route ([scheme://][user:pass@]host:port); a routes file's default_route comes first."`
	DialWorkers         int           `group:"upstream" default:"512" help:"Concurrent upstream dials (run off the event loops)."`
	PoolIdleTimeout     time.Duration `group:"upstream" default:"90s" help:"Close pooled upstream connections idle this long."`
	PoolMaxIdlePerKey   int           `group:"upstream" default:"16" help:"Idle pooled connections kept per (upstream, credentials); negative disables pooling."`
	InsecureUpstreamTLS bool          `group:"upstream" name:"insecure-upstream-tls" help:"Do not verify https upstream certificates."`
	UpstreamCA          string        `group:"upstream" name:"upstream-ca" help:"PEM file of extra CA certificates for https upstreams." type:"existingfile"`

	Routes     string        `group:"upstream" help:"Routes file (YAML): named groups of upstreams that requests select with 'X-Proxy-To: @NAME' or a proxy username USER-route-NAME-session-KEY; read again on SIGHUP. Example: routes/example.yaml." type:"existingfile"`
	EjectAfter int           `group:"upstream" default:"3" help:"Eject an upstream (of a route or an X-Proxy-To list) after this many failures in a row before any byte of a request reached it."`
	EjectFor   time.Duration `group:"upstream" default:"30s" help:"How long an ejected upstream is skipped before one request tries it again."`

	DNSServer      string        `group:"upstream" name:"dns-server" help:"DNS server HOST:PORT for upstream names (default: the nameservers of /etc/resolv.conf)."`
	DNSTTLMin      time.Duration `group:"upstream" name:"dns-ttl-min" default:"1s" help:"Shortest time an upstream name's answer is cached, whatever its TTL."`
	DNSTTLMax      time.Duration `group:"upstream" name:"dns-ttl-max" default:"5m" help:"Longest time an upstream name's answer is cached, whatever its TTL."`
	DNSNegativeTTL time.Duration `group:"upstream" name:"dns-negative-ttl" default:"5s" help:"How long a failed upstream name lookup is cached."`
	DNSPreferIPv6  bool          `group:"upstream" name:"dns-prefer-ipv6" env:"PROXYTO_DNS_PREFER_IPV6" help:"Try an upstream name's IPv6 addresses before its IPv4 ones."`

	DialTimeout           time.Duration `group:"timeouts" default:"10s" help:"Upstream dial timeout (DNS plus TCP connect)."`
	ResponseHeaderTimeout time.Duration `group:"timeouts" default:"30s" help:"How long to wait for the upstream's response head."`
	ClientHeaderTimeout   time.Duration `group:"timeouts" default:"10s" help:"How long a client may take to send a request head."`
	IdleTimeout           time.Duration `group:"timeouts" default:"60s" help:"Close kept-alive client connections idle this long."`
	TunnelIdleTimeout     time.Duration `group:"timeouts" default:"5m" help:"Close tunnels in which no byte moved this long."`
	DrainTimeout          time.Duration `group:"timeouts" default:"30s" help:"On SIGTERM/SIGINT, how long in-flight requests and tunnels get to finish."`

	MaxHeaderBytes int     `group:"limits" default:"65536" help:"Largest request head accepted (431 above)."`
	MaxConns       int     `group:"limits" default:"0" help:"Concurrent client connections overall (429 above); 0 means as many as the descriptor limit allows (two per connection, less a reserve)."`
	MaxConnsPerIP  int     `group:"limits" name:"max-conns-per-ip" default:"0" help:"Concurrent client connections per client IP; 0 means no cap."`
	RatePerIP      float64 `group:"limits" name:"rate-per-ip" default:"0" help:"Requests per second per client IP; 0 means no limit."`
	RateBurst      int     `group:"limits" default:"0" help:"Burst for --rate-per-ip; 0 means max(1, rate)."`
	RelayHighWater int     `group:"limits" default:"262144" help:"Pause reading a side when its peer has this many bytes queued."`
	RelayLowWater  int     `group:"limits" default:"65536" help:"Resume a paused side when its peer's queue falls to this."`
	SpliceAfter    int     `group:"limits" default:"262144" help:"Bytes a tunnel moves in bulk before it is relayed with splice(2), kernel to kernel; negative keeps every tunnel in user space."`

	AuthUsers      []string `group:"security" help:"Client credentials user:password required in Proxy-Authorization (repeatable, or comma-separated; use --auth-htpasswd for passwords with commas)." sep:","`
	AuthHtpasswd   string   `group:"security" help:"htpasswd file (bcrypt) with client credentials." type:"existingfile"`
	Allow          []string `group:"security" help:"Upstreams allowed (CIDR or host name; repeatable). Empty allows all not denied." sep:","`
	Deny           []string `group:"security" help:"Upstreams refused (CIDR or host name; repeatable)." sep:","`
	AllowLinkLocal bool     `group:"security" help:"Allow upstreams on link-local and cloud-metadata addresses."`

	LogFormat       string  `group:"observability" default:"json" enum:"json,console" help:"Log format: json or console."`
	LogLevel        string  `group:"observability" default:"info" enum:"debug,info,warn,error" help:"Lowest level logged."`
	AccessLog       bool    `group:"observability" default:"true" negatable:"" help:"Write one access line per request or tunnel."`
	AccessLogSample float64 `group:"observability" default:"1" help:"Fraction (0..1] of access lines written, for very high rates."`
	RequestMetrics  bool    `group:"observability" default:"true" negatable:"" help:"Count requests, tunnels, bytes and latencies in /metrics (--no-request-metrics with --no-access-log: observe nothing, to measure what observing costs)."`
	Pprof           bool    `group:"observability" help:"Serve /debug/pprof/ on the admin listener."`
}

// flagGroups titles the groups of runCmd's flags in --help.
var flagGroups = []kong.Group{
	{Key: "listeners", Title: "Listeners:"},
	{Key: "upstream", Title: "Upstream:"},
	{Key: "timeouts", Title: "Timeouts:"},
	{Key: "limits", Title: "Limits:"},
	{Key: "security", Title: "Security:"},
	{Key: "observability", Title: "Observability:"},
}

func (r *runCmd) Run(kctx *kong.Context) error {
	peers, err := r.checkClientSide()
	if err != nil {
		return err
	}
	// SIGHUP reloads; until the loop below listens, it must not end the
	// process (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	tracker := health.New(health.Config{EjectAfter: r.EjectAfter, EjectFor: r.EjectFor})
	dns, err := dnscache.New(dnscache.Config{
		Server:      r.DNSServer,
		MinTTL:      r.DNSTTLMin,
		MaxTTL:      r.DNSTTLMax,
		NegativeTTL: r.DNSNegativeTTL,
		PreferIPv6:  r.DNSPreferIPv6,
	})
	if err != nil {
		return fmt.Errorf("--dns-server: %w", err)
	}
	rl := &reloader{routesPath: r.Routes, htpasswd: r.AuthHtpasswd}
	if r.Routes != "" {
		rl.routes = routes.NewHolder(tracker)
		if err := rl.routes.Reload(r.Routes); err != nil {
			return err
		}
	}
	if rl.auth, err = buildAuth(r.AuthUsers, r.AuthHtpasswd); err != nil {
		return err
	}
	acct := &observability.AccountingOptions{Health: tracker, DNS: dns}
	if rl.routes != nil {
		acct.RouteNames, acct.Routes = rl.routes.Names, rl.routes
	}
	if rl.auth != nil {
		acct.UserNames = rl.auth.Names
	}

	obs, err := observability.New(observability.Options{
		LogFormat:        r.LogFormat,
		LogLevel:         r.LogLevel,
		AccessLog:        r.AccessLog,
		AccessLogSample:  r.AccessLogSample,
		NoRequestMetrics: !r.RequestMetrics,
		Version:          version,
		MaxConns:         r.MaxConns,
		Accounting:       acct,
	})
	if err != nil {
		return err
	}
	defer obs.Close()
	rl.obs = obs
	rl.warnUserNames()

	cfg := engine.Config{
		Listen:                r.Listen,
		ReusePort:             r.ReusePort,
		Loops:                 r.Loops,
		TLSListen:             r.TLSListen,
		TLSCertFile:           r.TLSCert,
		TLSKeyFile:            r.TLSKey,
		TLSObserver:           obs.TLSObserver(),
		ProxyPeers:            peers,
		Compress:              r.Compress,
		DialTimeout:           r.DialTimeout,
		ResponseHeaderTimeout: r.ResponseHeaderTimeout,
		ClientHeaderTimeout:   r.ClientHeaderTimeout,
		IdleTimeout:           r.IdleTimeout,
		TunnelIdleTimeout:     r.TunnelIdleTimeout,
		MaxHeaderBytes:        r.MaxHeaderBytes,
		DefaultUpstream:       r.Default,
		Routes:                rl.routes,
		Health:                tracker,
		Resolver:              dns,
		DialWorkers:           r.DialWorkers,
		RelayHighWater:        r.RelayHighWater,
		RelayLowWater:         r.RelayLowWater,
		SpliceAfter:           r.SpliceAfter,
		PoolIdleTimeout:       r.PoolIdleTimeout,
		PoolMaxIdlePerKey:     r.PoolMaxIdlePerKey,
		MaxConns:              r.MaxConns,
		MaxConnsPerIP:         r.MaxConnsPerIP,
		RatePerIP:             r.RatePerIP,
		RateBurst:             r.RateBurst,
		AllowLinkLocal:        r.AllowLinkLocal,
		InsecureUpstreamTLS:   r.InsecureUpstreamTLS,
		UpstreamCAFile:        r.UpstreamCA,
		Observer:              obs.Observer(),
		Logf:                  func(f string, a ...any) { obs.Logger().Warn(fmt.Sprintf(f, a...)) },
	}
	if r.Admin != "" {
		cfg.SelfAddrs = append(cfg.SelfAddrs, r.Admin)
	}
	if rl.auth != nil {
		cfg.Auth = rl.auth // a nil *auth.Holder would be a non-nil interface
	}
	if cfg.UpstreamCheck, err = buildUpstreamCheck(r.Allow, r.Deny, r.AllowLinkLocal); err != nil {
		return err
	}

	eng, err := engine.New(cfg)
	if err != nil {
		return err
	}
	if err := eng.Start(); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && !r.ReusePort {
			return fmt.Errorf("%w (another process listens on that port; proxyto processes share a port only when each runs with --reuse-port)", err)
		}
		return err
	}
	rl.tls, rl.tlsCert = eng, r.TLSCert
	obs.Logger().Info("listening", observability.Str("listen", eng.Addr()), observability.Str("tls_listen", eng.TLSAddr()),
		observability.Str("proxy_protocol_from", peers.String()), observability.Bool("compress", r.Compress),
		observability.Str("admin", r.Admin), observability.Str("version", version), observability.Int("max_conns", eng.MaxConns()))

	if r.Admin != "" {
		if err := obs.ServeAdmin(r.Admin, eng.Ready, r.Pprof); err != nil {
			_ = eng.Shutdown(context.Background())
			return fmt.Errorf("admin listener: %w", err)
		}
	}

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	var s os.Signal
	for s == nil {
		select {
		case <-hup:
			rl.reload()
		case s = <-sig:
		case err := <-eng.Done():
			return err
		}
	}
	obs.Logger().Info("draining", observability.Str("signal", s.String()), observability.Dur("drain_timeout", r.DrainTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), r.DrainTimeout)
	defer cancel()
	go func() {
		// A second signal ends the drain at once.
		<-sig
		obs.Logger().Warn("second signal: exiting without waiting")
		cancel()
	}()
	if err := eng.Shutdown(ctx); err != nil {
		obs.Logger().Warn("drain ended early", observability.Err(err))
	}
	// The admin listener answered /ready 503 through the drain; stop it now.
	actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = obs.Shutdown(actx)
	acancel()
	obs.Logger().Info("stopped")
	return nil
}

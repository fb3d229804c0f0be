package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/compression"
	"github.com/proxyto/proxyto/dnscache"
	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/internal/gnetx"
	"github.com/proxyto/proxyto/tlsfront"
	"github.com/proxyto/proxyto/tunnel"
	"github.com/proxyto/proxyto/upstream"
)

// Engine is the gateway: a gnet engine whose loops accept the clients, the
// dial pool and the per-loop timers. Create it with New, then Start it; its
// methods are safe for concurrent use.
type Engine struct {
	cfg    Config
	dialer upstream.Dialer
	health *health.Tracker    // cfg.Health, or its default
	dns    *dnscache.Resolver // cfg.Resolver, or its default
	dials  dialPool
	limits limiter
	fds    fdBudget
	relay  tunnel.Config
	gz     *compression.Pool // nil unless Config.Compress

	defaultList *httpparse.UpstreamList // parsed --default-upstream, or nil

	addr    string // the plain listener's, or "" without one
	tlsAddr string // the TLS listener's, or "" without one
	tls     *tlsfront.Server
	self    selfAddrs
	gnet    gnet.Engine
	booted  chan struct{}
	done    chan error
	hot     chan struct{} // a loop got work for its scan: wake the ticker

	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*loopState]

	draining atomic.Bool
	stopped  atomic.Bool
	// clients counts live sessions: from accept until the client and
	// upstream connections are both closed and every byte was delivered
	// (a half-closed tunnel outlives gnet's client connection). The drain
	// waits for it to reach zero.
	clients atomic.Int64
}

// New validates cfg and returns an Engine that is not yet listening.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if cfg.RelayLowWater >= cfg.RelayHighWater {
		return nil, fmt.Errorf("proxyto: relay low water (%d) must be below high water (%d)", cfg.RelayLowWater, cfg.RelayHighWater)
	}
	e := &Engine{
		cfg:    cfg,
		relay:  tunnel.Config{HighWater: cfg.RelayHighWater, LowWater: cfg.RelayLowWater, SpliceAfter: max(cfg.SpliceAfter, 0)},
		booted: make(chan struct{}),
		done:   make(chan error, 1),
		hot:    make(chan struct{}, 1),
	}
	if cfg.DefaultUpstream != "" {
		var l httpparse.UpstreamList
		if err := l.Parse([]byte(cfg.DefaultUpstream)); err != nil {
			return nil, fmt.Errorf("proxyto: --default-upstream: %v", err)
		}
		e.defaultList = &l
	}
	tlsCfg, err := upstreamTLS(cfg)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Health != nil && cfg.Routes != nil && cfg.Health != cfg.Routes.Tracker():
		// Route entries' states live in the holder's tracker: reports to
		// another one would never eject them.
		return nil, errors.New("proxyto: engine: Config.Health must be the tracker of Config.Routes")
	case cfg.Health != nil:
		e.health = cfg.Health
	case cfg.Routes != nil:
		e.health = cfg.Routes.Tracker()
	default:
		e.health = health.New(health.Config{})
	}
	if e.dns = cfg.Resolver; e.dns == nil {
		if e.dns, err = dnscache.New(dnscache.Config{}); err != nil {
			return nil, err
		}
	}
	e.dialer = upstream.Dialer{
		Lookup:         e.dns.Lookup,
		Timeout:        cfg.DialTimeout,
		Check:          cfg.UpstreamCheck,
		IsSelf:         e.self.contains,
		AllowLinkLocal: cfg.AllowLinkLocal,
		TLS:            tlsCfg,
	}
	if cfg.Compress {
		e.gz = compression.NewPool(0)
	}
	if cfg.TLSListen != "" {
		if e.tls, err = e.newTLSFront(); err != nil {
			return nil, err
		}
	}
	e.dials.init(cfg.DialWorkers)
	loops := cfg.Loops
	if loops <= 0 {
		loops = runtime.NumCPU()
	}
	e.fds.init(cfg, loops)
	e.limits.init(cfg)
	e.loops.Store(&[]*loopState{})
	return e, nil
}

// Start binds the client listeners, starts the event loops, and returns
// once clients can connect.
//
// gnet accepts the plain listener's clients itself, each loop on its own
// SO_REUSEPORT listener, so a new connection costs no thread hand-off. The
// port is first reserved with a bound (not listening) socket of the same
// reuse group, so that ":0" yields one port for all loops and no other
// process can take it in between. The TLS listener has one socket and
// tlsfront's accept loop (tlslistener.go).
func (e *Engine) Start() error {
	if err := gnetx.SelfCheck(); err != nil {
		return err
	}
	// gnet's Engine (Register, Stop) refuses to work without a listener:
	// without a plain listener, the loops get one on an ephemeral loopback
	// port, retired as soon as they run (gnetx.RetireListeners).
	listen, placeholder := e.cfg.Listen, e.cfg.Listen == ""
	if placeholder {
		listen = "127.0.0.1:0"
	}
	resv, addr, err := reservePort(listen, e.cfg.ReusePort && !placeholder)
	if err != nil {
		return fmt.Errorf("proxyto: listen %s: %w", e.cfg.Listen, err)
	}
	defer unix.Close(resv)
	if !placeholder {
		e.addr = addr
	}
	var tlsLn net.Listener
	if e.tls != nil {
		ln, addr, err := listenTLS(e.cfg.TLSListen, e.cfg.ReusePort)
		if err != nil {
			return fmt.Errorf("proxyto: tls-listen %s: %w", e.cfg.TLSListen, err)
		}
		tlsLn, e.tlsAddr = ln, addr
	}
	e.self.init(append([]string{e.addr, e.tlsAddr}, e.cfg.SelfAddrs...))

	opts := []gnet.Option{
		gnet.WithReusePort(true),
		gnet.WithReuseAddr(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetx.Logger{Logf: e.cfg.Logf}),
		// Engine.Register (the TLS listener's hand-over) picks a loop
		// with it; the round-robin default is not safe for concurrent
		// callers.
		gnet.WithLoadBalancing(gnet.LeastConnections),
	}
	if e.cfg.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(e.cfg.Loops))
	} else {
		opts = append(opts, gnet.WithMulticore(true))
	}
	go func() {
		err := gnet.Run(&handler{e: e}, "tcp://"+addr, opts...)
		select {
		case <-e.booted:
		default:
			close(e.booted)
		}
		if err == nil && !e.stopped.Load() {
			err = errors.New("proxyto: event loops stopped")
		}
		if !e.stopped.Load() {
			e.done <- err
		}
	}()
	<-e.booted
	if e.gnet.Validate() != nil {
		if tlsLn != nil {
			_ = tlsLn.Close()
		}
		select {
		case derr := <-e.done:
			return fmt.Errorf("proxyto: listen %s: %w", e.addr, derr)
		case <-time.After(5 * time.Second):
			return errors.New("proxyto: event loops failed to start")
		}
	}
	if placeholder {
		gnetx.RetireListeners(addr)
	}
	if tlsLn != nil {
		go func() {
			if err := e.tls.Serve(tlsLn); err != nil && !e.draining.Load() && !e.stopped.Load() {
				e.logf("proxyto: TLS listener %s stopped: %v", e.tlsAddr, err)
			}
		}()
	}
	go e.ticker()
	return nil
}

// MaxConns is the cap on concurrent plain client connections in force: the
// configured one, or what the descriptor limit allows (each connection
// counts two descriptors, beside a reserve; one from the TLS listener
// four), whichever is lower.
func (e *Engine) MaxConns() int {
	if m := e.limits.maxConns; m > 0 && m < e.fds.conns() {
		return m
	}
	return e.fds.conns()
}

// Addr is the bound plain client listener address ("127.0.0.1:8080"), or
// "" without one.
func (e *Engine) Addr() string { return e.addr }

// Ready reports whether the engine takes new work (false while draining).
// Safe for concurrent use.
func (e *Engine) Ready() bool { return !e.draining.Load() && !e.stopped.Load() }

// Done yields an error if the engine stops by itself (not after Shutdown).
func (e *Engine) Done() <-chan error { return e.done }

// Shutdown drains: it stops accepting (the listeners are retired, so new
// connections are refused and a TCP balancer in front moves on; TLS
// handshakes in progress are aborted), answers new requests on open
// connections with 503, closes idle connections, and waits until every
// in-flight request and tunnel finished or ctx ends; then it stops the
// event loops. Safe to call once.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.draining.Store(true)
	if e.addr != "" {
		gnetx.RetireListeners(e.addr)
	}
	if e.tls != nil {
		_ = e.tls.Close()
	}
	e.forEachLoop(func(ls *loopState) { ls.closeIdle() })
	var err error
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for e.clients.Load() > 0 {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("proxyto: drain timeout with %d client connections open", e.clients.Load())
		case <-t.C:
			e.forEachLoop(func(ls *loopState) { ls.closeIdle() })
			continue
		}
		break
	}
	e.stopped.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := e.gnet.Stop(sctx); serr != nil && err == nil {
		err = serr
	}
	for _, ls := range *e.loops.Load() {
		ls.relay.Close() // the loops stopped: nothing uses their splice paths any more
	}
	return err
}

// ticker drives every loop's scan: often for loops with relays to service,
// and at least every 250 ms for deadlines.
func (e *Engine) ticker() {
	// Every 5 ms while a loop has something to service, otherwise every
	// 250 ms for the deadlines: on a machine where a thread switch is
	// costly, an idle 5 ms tick was a measurable share of a short tunnel's
	// CPU. A loop that becomes hot wakes the ticker (watch).
	const fast, slow = 5 * time.Millisecond, 250 * time.Millisecond
	t := time.NewTimer(fast)
	defer t.Stop()
	var lastSweep time.Time
	for {
		select {
		case <-t.C:
		case <-e.hot:
		}
		if e.stopped.Load() {
			return
		}
		tick := time.Now()
		if tick.Sub(lastSweep) >= 5*time.Second {
			lastSweep = tick
			e.limits.sweep(tick)
		}
		now := tick.UnixNano()
		hot := false
		for _, ls := range *e.loops.Load() {
			h := ls.hot.Load()
			hot = hot || h
			if h || now-ls.lastScan.Load() >= int64(slow) {
				if ls.scanQueued.CompareAndSwap(false, true) {
					_ = ls.el.Execute(context.Background(), ls.scanRun)
				}
			}
		}
		next := slow
		if hot {
			next = fast
		}
		t.Reset(next)
	}
}

func (e *Engine) forEachLoop(f func(*loopState)) {
	for _, ls := range *e.loops.Load() {
		done := make(chan struct{})
		if ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			f(ls)
			close(done)
			return nil
		})) != nil {
			continue
		}
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// selfAddrs are proxyto's own listeners, for loop detection.
type selfAddrs struct {
	exact []netip.AddrPort // listeners bound to one address
	ports []uint16         // listeners bound to all addresses
	local []netip.Addr     // this host's addresses, for ports
}

func (s *selfAddrs) init(addrs []string) {
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			continue
		}
		ip, err := netip.ParseAddr(host)
		if host == "" || (err == nil && ip.IsUnspecified()) {
			s.ports = append(s.ports, uint16(p))
			continue
		}
		if err != nil {
			if host == "localhost" {
				s.exact = append(s.exact, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p)),
					netip.AddrPortFrom(netip.IPv6Loopback(), uint16(p)))
			}
			continue
		}
		s.exact = append(s.exact, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
	}
	if len(s.ports) > 0 {
		if ifs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range ifs {
				if pn, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(pn.IP); ok {
						s.local = append(s.local, ip.Unmap())
					}
				}
			}
		}
	}
}

// contains reports whether dialing ap would reach proxyto itself.
func (s *selfAddrs) contains(ap netip.AddrPort) bool {
	a := ap.Addr().Unmap()
	for _, x := range s.exact {
		if x.Port() == ap.Port() && x.Addr() == a {
			return true
		}
	}
	for _, p := range s.ports {
		if p != ap.Port() {
			continue
		}
		if a.IsLoopback() || a.IsUnspecified() {
			return true
		}
		for _, l := range s.local {
			if l == a {
				return true
			}
		}
	}
	return false
}

// logf reports a rare operational message (Config.Logf).
func (e *Engine) logf(format string, args ...any) {
	if e.cfg.Logf != nil {
		e.cfg.Logf(format, args...)
	}
}

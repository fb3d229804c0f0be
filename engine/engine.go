package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/tunnel"
	"github.com/proxyto/proxyto/upstream"
)

// Engine is the gateway: a gnet engine, the accept loop that feeds it, the
// dial pool and the per-loop timers. Create it with New, then Start it.
type Engine struct {
	gnet.BuiltinEventEngine

	cfg    Config
	dialer upstream.Dialer
	dials  dialPool
	limits limiter
	relay  tunnel.Config

	defaultList *httpparse.UpstreamList // parsed --default-upstream, or nil

	ln        *net.TCPListener
	addr      string
	self      selfAddrs
	gnet      gnet.Engine
	booted    chan struct{}
	loopsUp   chan struct{} // closed once an event loop ran OnOpen
	loopsOnce sync.Once
	done      chan error

	loopsMu sync.Mutex
	loops   atomic.Pointer[[]*loopState]

	draining atomic.Bool
	stopped  atomic.Bool
	clients  atomic.Int64 // open client connections
	tunnels  atomic.Int64 // sessions past the head (dialing, relaying, forwarding)
}

// New validates cfg and returns an Engine that is not yet listening.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if cfg.RelayLowWater >= cfg.RelayHighWater {
		return nil, fmt.Errorf("proxyto: relay low water (%d) must be below high water (%d)", cfg.RelayLowWater, cfg.RelayHighWater)
	}
	e := &Engine{
		cfg:     cfg,
		relay:   tunnel.Config{HighWater: cfg.RelayHighWater, LowWater: cfg.RelayLowWater},
		booted:  make(chan struct{}),
		loopsUp: make(chan struct{}),
		done:    make(chan error, 1),
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
	e.dialer = upstream.Dialer{
		Timeout:        cfg.DialTimeout,
		Check:          cfg.UpstreamCheck,
		IsSelf:         e.self.contains,
		AllowLinkLocal: cfg.AllowLinkLocal,
		TLS:            tlsCfg,
	}
	e.dials.init(cfg.DialWorkers)
	e.limits.init(cfg)
	e.loops.Store(&[]*loopState{})
	return e, nil
}

// Start binds the client listener, starts the event loops and the accept
// loop, and returns once clients can connect.
func (e *Engine) Start() error {
	if err := tunnel.SelfCheck(); err != nil {
		return err
	}
	lc := net.ListenConfig{}
	l, err := lc.Listen(context.Background(), "tcp", e.cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxyto: listen %s: %w", e.cfg.Listen, err)
	}
	e.ln = l.(*net.TCPListener)
	e.addr = e.ln.Addr().String()
	e.self.init(append([]string{e.addr}, e.cfg.SelfAddrs...))

	loops := e.cfg.Loops
	opts := []gnet.Option{
		gnet.WithReuseAddr(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{e.cfg.Logf}),
		// Register is called from the accept loop while gnet's own acceptor
		// may pick loops too: RoundRobin is not safe for that.
		gnet.WithLoadBalancing(gnet.LeastConnections),
	}
	if loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(loops))
	} else {
		opts = append(opts, gnet.WithMulticore(true))
	}
	go func() {
		// gnet needs a listener of its own; clients never reach it (the
		// engine accepts on e.ln and enrolls them), and anything that does
		// connect to it is closed in OnOpen.
		err := gnet.Run(e, "tcp://127.0.0.1:0", opts...)
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
	if err := e.awaitLoops(); err != nil {
		_ = e.ln.Close()
		select {
		case derr := <-e.done:
			return derr
		default:
			return err
		}
	}
	go e.acceptLoop()
	go e.ticker()
	return nil
}

// awaitLoops returns once gnet's event loops run. gnet calls OnBoot before
// it creates them, and Engine.Register must not run before that: so the
// engine connects to gnet's own placeholder listener and waits for that
// connection's OnOpen, which only a running loop can call.
func (e *Engine) awaitLoops() error {
	if e.stopped.Load() || e.gnet.Validate() != nil {
		return errors.New("proxyto: event loops failed to start")
	}
	fd, err := e.gnet.Dup()
	if err != nil {
		return fmt.Errorf("proxyto: event loops: %w", err)
	}
	f := os.NewFile(uintptr(fd), "gnet-listener")
	ln, err := net.FileListener(f)
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("proxyto: event loops: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("proxyto: event loops: %w", err)
	}
	defer c.Close()
	select {
	case <-e.loopsUp:
		return nil
	case err := <-e.done:
		e.done <- err
		return errors.New("proxyto: event loops stopped while starting")
	case <-time.After(10 * time.Second):
		return errors.New("proxyto: event loops did not start")
	}
}

// OnBoot records the gnet engine; its loops start right after.
func (e *Engine) OnBoot(eng gnet.Engine) gnet.Action {
	e.gnet = eng
	close(e.booted)
	return gnet.None
}

// Addr is the bound client listener address ("127.0.0.1:8080").
func (e *Engine) Addr() string { return e.addr }

// Ready reports whether the engine takes new work (false while draining).
// Safe for concurrent use.
func (e *Engine) Ready() bool { return !e.draining.Load() && !e.stopped.Load() }

// Done yields an error if the engine stops by itself (not after Shutdown).
func (e *Engine) Done() <-chan error { return e.done }

// Shutdown drains: it stops accepting (new connections are refused), answers
// new requests on open connections with 503, closes idle connections, and
// waits until every in-flight request and tunnel finished or ctx ends; then
// it stops the event loops. Safe to call once.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.draining.Store(true)
	if e.ln != nil {
		_ = e.ln.Close()
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
	return err
}

// acceptLoop accepts clients on e.ln and enrolls them on the event loops.
// The engine owns the listener (not gnet) so that draining can close it and
// new connections are refused, which a TCP balancer in front takes as a cue
// to use another replica.
func (e *Engine) acceptLoop() {
	var delay time.Duration
	for {
		c, err := e.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			time.Sleep(delay)
			continue
		}
		delay = 0
		ip := addrPortOf(c.RemoteAddr()).Addr()
		if reason, ok := e.limits.admit(ip); !ok {
			e.cfg.Observer.LimitRejected(reason)
			go refuse(c, reason)
			continue
		}
		ch, err := e.gnet.Register(gnet.NewNetConnContext(gnet.NewContext(context.Background(), clientMark{ip: ip}), c))
		if err != nil {
			e.limits.release(ip)
			_ = c.Close()
			continue
		}
		// Registration errors are reported only on the channel; gnet's
		// worker closes c once the descriptor is duplicated onto a loop.
		go func() {
			if r := <-ch; r.Err != nil {
				e.limits.release(ip)
			}
		}()
	}
}

// clientMark is the context gnet hands to OnOpen for an accepted client.
type clientMark struct{ ip netip.Addr }

// ticker drives every loop's scan: often for loops with relays to service,
// and at least every 250 ms for deadlines.
func (e *Engine) ticker() {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		if e.stopped.Load() {
			return
		}
		now := time.Now().UnixNano()
		for _, ls := range *e.loops.Load() {
			if ls.hot.Load() || now-ls.lastScan.Load() >= int64(250*time.Millisecond) {
				if ls.scanQueued.CompareAndSwap(false, true) {
					_ = ls.el.Execute(context.Background(), ls.scanRun)
				}
			}
		}
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

// refuse answers a client over a limit with 429 (or 503 while draining).
func refuse(c *net.TCPConn, reason LimitReason) {
	resp := limitResponse(reason)
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write(resp)
	_ = c.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			break
		}
	}
	_ = c.Close()
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
		if x.Port() == ap.Port() && (x.Addr() == a || (x.Addr().IsLoopback() && a.IsLoopback() && x.Addr().Is4() == a.Is4() && a.Is4() && x.Addr() == a)) {
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

// gnetLogger passes gnet's warnings and errors to Config.Logf and drops the
// rest, so gnet never installs its own global logger output.
type gnetLogger struct{ logf func(string, ...any) }

func (gnetLogger) Debugf(string, ...any) {}
func (gnetLogger) Infof(string, ...any)  {}
func (l gnetLogger) Warnf(f string, a ...any) {
	if l.logf != nil {
		l.logf("gnet: "+f, a...)
	}
}
func (l gnetLogger) Errorf(f string, a ...any) {
	if l.logf != nil {
		l.logf("gnet: "+f, a...)
	}
}
func (l gnetLogger) Fatalf(f string, a ...any) {
	l.Errorf(f, a...)
	os.Exit(1)
}

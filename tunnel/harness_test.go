package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/internal/gnetx"
)

// This file is a minimal engine for tests: a one-loop gnet server that, for
// every accepted client, dials a Go upstream server from a goroutine, enrolls
// it on the client's loop, and relays the two with a Relay, servicing it every
// 5 ms through EventLoop.Execute while it asks for it.

// testDeadline bounds every wait in these tests; nothing asserts timing.
const testDeadline = 60 * time.Second

// relayEngine is a gnet engine running relays to one upstream address.
type relayEngine struct {
	gnet.BuiltinEventEngine
	t      testing.TB
	cfg    Config
	upAddr string
	// rcvBuf and sndBuf, when set, fix SO_RCVBUF and SO_SNDBUF of both
	// relayed sockets, so that kernel buffering is predictable.
	rcvBuf, sndBuf int

	eng    gnet.Engine
	addr   string
	booted chan struct{}
	pairs  chan *pair // each relay once started
}

// pair is one relayed client/upstream couple. Fields without atomics are
// touched on the loop only.
type pair struct {
	e      *relayEngine
	el     gnet.EventLoop
	client gnet.Conn
	up     gnet.Conn
	loop   *Loop
	ends   [2]End
	relay  Relay

	started      bool
	clientGone   bool     // client closed before the upstream opened
	closeErr     [2]error // error gnet reported in OnClose, per side
	closedSides  [2]bool
	serviceCalls int

	// Published for the test goroutine after every callback.
	done, closed, needs atomic.Bool
	moved               [2]atomic.Int64
	errs                [2]atomic.Pointer[error]
	lost                [2]atomic.Value // string: diagnosis of bytes dropped at close
	// closedUndrained: Closed() was true while NeedsService() still was (a
	// sink held bytes), so an owner that stops servicing at Closed loses them.
	closedUndrained atomic.Bool
	finished        chan struct{} // closed once Done, Closed and !NeedsService
	finishOnce      sync.Once
}

type connCtx struct {
	p    *pair
	side Side
}

// startRelayEngine runs a one-loop gnet engine on loopback relaying to
// upAddr, stopped at the end of the test.
func startRelayEngine(t testing.TB, cfg Config, upAddr string) *relayEngine {
	return startRelayEngineBuf(t, cfg, upAddr, 0, 0)
}

// startRelayEngineBuf is startRelayEngine with the relayed sockets' kernel
// buffers fixed (0: system defaults, autotuned).
func startRelayEngineBuf(t testing.TB, cfg Config, upAddr string, rcvBuf, sndBuf int) *relayEngine {
	t.Helper()
	e := &relayEngine{t: t, cfg: cfg, upAddr: upAddr, rcvBuf: rcvBuf, sndBuf: sndBuf, booted: make(chan struct{}), pairs: make(chan *pair, 64)}
	opts := []gnet.Option{gnet.WithNumEventLoop(1), gnet.WithReuseAddr(true), gnet.WithLogger(gnetx.Logger{})}
	if rcvBuf > 0 {
		opts = append(opts, gnet.WithSocketRecvBuffer(rcvBuf))
	}
	if sndBuf > 0 {
		opts = append(opts, gnet.WithSocketSendBuffer(sndBuf))
	}
	runErr := make(chan error, 1)
	go func() {
		runErr <- gnet.Run(e, "tcp://127.0.0.1:0", opts...)
	}()
	select {
	case <-e.booted:
	case err := <-runErr:
		t.Fatalf("gnet.Run: %v", err)
	case <-time.After(testDeadline):
		t.Fatal("gnet engine did not boot")
	}
	if e.addr == "" {
		t.Fatal("no listener address")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		_ = e.eng.Stop(ctx)
		select {
		case <-runErr:
		case <-time.After(testDeadline):
			t.Error("gnet engine did not stop")
		}
	})
	return e
}

func (e *relayEngine) OnBoot(eng gnet.Engine) gnet.Action {
	e.eng = eng
	if fd, err := eng.Dup(); err == nil {
		e.addr = gnetx.ListenerAddr(fd)
	}
	close(e.booted)
	return gnet.None
}

func (e *relayEngine) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if cc, ok := c.Context().(*connCtx); ok {
		// The enrolled upstream.
		p := cc.p
		p.up = c
		if p.clientGone {
			return nil, gnet.Close
		}
		p.ends[Upstream].Attach(p.loop, c)
		p.relay.Start(&p.ends[Client], &p.ends[Upstream])
		p.started = true
		p.publish()
		e.pairs <- p
		go p.serviceLoop()
		return nil, gnet.None
	}
	p := &pair{e: e, el: c.EventLoop(), client: c, finished: make(chan struct{})}
	c.SetContext(&connCtx{p: p, side: Client})
	// Like the engine, stop reading the client while dialing; Start takes
	// the paused state over.
	loop, err := NewLoop(c, e.cfg)
	if err != nil {
		e.t.Errorf("NewLoop: %v", err)
		return nil, gnet.Close
	}
	p.loop = loop
	p.ends[Client].Attach(loop, c)
	p.ends[Client].Pause()
	go p.dial()
	return nil, gnet.None
}

// dial connects to the upstream off the loop and enrolls it on the client's
// loop. It never waits inside a callback.
func (p *pair) dial() {
	nc, err := net.DialTimeout("tcp", p.e.upAddr, testDeadline)
	if err != nil {
		p.e.t.Errorf("dial upstream: %v", err)
		_ = p.client.Close()
		return
	}
	// The enrolled descriptor is a dup of this socket: same buffers.
	if b := p.e.rcvBuf; b > 0 {
		_ = nc.(*net.TCPConn).SetReadBuffer(b)
	}
	if b := p.e.sndBuf; b > 0 {
		_ = nc.(*net.TCPConn).SetWriteBuffer(b)
	}
	ch, err := p.el.Enroll(gnet.NewContext(context.Background(), &connCtx{p: p, side: Upstream}), nc)
	if err != nil {
		p.e.t.Errorf("enroll: %v", err)
		_ = nc.Close()
		_ = p.client.Close()
		return
	}
	if res := <-ch; res.Err != nil {
		p.e.t.Errorf("enroll result: %v", res.Err)
		_ = p.client.Close()
	}
}

func (e *relayEngine) OnTraffic(c gnet.Conn) gnet.Action {
	cc := c.Context().(*connCtx)
	if !cc.p.started {
		return gnet.None // left in gnet's inbound buffer; Start relays it
	}
	cc.p.relay.OnTraffic(cc.side)
	cc.p.publish()
	return gnet.None
}

func (e *relayEngine) OnClose(c gnet.Conn, err error) gnet.Action {
	cc, ok := c.Context().(*connCtx)
	if !ok {
		return gnet.None
	}
	p := cc.p
	// What gnet is about to throw away: bytes still unread in the kernel and
	// in its inbound buffer, and whether this relay had the side paused.
	if unread, ierr := unix.IoctlGetInt(c.Fd(), unix.SIOCINQ); ierr == nil && unread > 0 || c.InboundBuffered() > 0 {
		p.lost[cc.side].Store(fmt.Sprintf("gnet closed %v (err %v, paused=%v) with %d bytes unread in the socket and %d in its inbound buffer",
			cc.side, err, p.ends[cc.side].paused, unread, c.InboundBuffered()))
	}
	p.closedSides[cc.side] = true
	p.closeErr[cc.side] = err
	errCopy := err
	p.errs[cc.side].Store(&errCopy)
	if !p.started {
		if cc.side == Client {
			p.clientGone = true
		}
		return gnet.None
	}
	p.relay.OnClose(cc.side, err)
	p.publish()
	return gnet.None
}

// publish copies the relay's state for the test goroutine. Loop only.
func (p *pair) publish() {
	p.done.Store(relayDone(&p.relay))
	p.closed.Store(p.relay.Closed())
	p.needs.Store(p.relay.NeedsService())
	p.moved[Client].Store(p.relay.Moved(Client))
	p.moved[Upstream].Store(p.relay.Moved(Upstream))
	if p.relay.Closed() && p.relay.NeedsService() {
		p.closedUndrained.Store(true)
	}
	if relayDone(&p.relay) && p.relay.Closed() && !p.relay.NeedsService() {
		p.finishOnce.Do(func() { close(p.finished) })
	}
}

// relayDone reports whether both directions are finished and every
// connection and sink of the relay is closed or closing.
func relayDone(r *Relay) bool {
	if r.dir[0].state != pipeClosed || r.dir[1].state != pipeClosed {
		return false
	}
	for _, e := range r.ends {
		if e.sink != nil || e.src != nil || (e.c != nil && !e.closing) {
			return false
		}
	}
	return true
}

// serviceLoop calls Service on the loop every 5 ms while the relay needs it,
// until the relay is finished or the engine stops.
func (p *pair) serviceLoop() {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.finished:
			return
		case <-tick.C:
		}
		err := p.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if p.relay.NeedsService() {
				p.serviceCalls++
				p.relay.Service()
			}
			p.publish()
			return nil
		}))
		if err != nil {
			return // engine shutting down
		}
	}
}

// onLoop runs f on the pair's loop and waits for it.
func (p *pair) onLoop(t testing.TB, f func()) {
	t.Helper()
	ran := make(chan struct{})
	err := p.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f()
		p.publish()
		close(ran)
		return nil
	}))
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	select {
	case <-ran:
	case <-time.After(testDeadline):
		t.Fatal("loop did not run the task")
	}
}

// nextPair waits for the relay of the next client.
func (e *relayEngine) nextPair(t testing.TB) *pair {
	t.Helper()
	select {
	case p := <-e.pairs:
		return p
	case <-time.After(testDeadline):
		t.Fatal("no relay started")
		return nil
	}
}

// waitFinished waits until the relay is Done and Closed with nothing left to
// service, and checks it.
func (p *pair) waitFinished(t testing.TB) {
	t.Helper()
	select {
	case <-p.finished:
	case <-time.After(testDeadline):
		t.Fatalf("relay not finished: Done=%v Closed=%v NeedsService=%v", p.done.Load(), p.closed.Load(), p.needs.Load())
	}
	if !p.done.Load() || !p.closed.Load() {
		t.Fatalf("Done=%v Closed=%v", p.done.Load(), p.closed.Load())
	}
}

// lostReport describes bytes gnet dropped when it closed a side, or "".
func (p *pair) lostReport() string {
	var out string
	for s := range p.lost {
		if v, ok := p.lost[s].Load().(string); ok {
			out += v + "; "
		}
	}
	return out
}

// closeErr returns the error gnet closed side s with (nil if not yet closed
// or closed cleanly by the relay).
func (p *pair) sideErr(s Side) error {
	if e := p.errs[s].Load(); e != nil {
		return *e
	}
	return errors.New("not closed")
}

// dialClient connects a test client to the relay engine.
func (e *relayEngine) dialClient(t testing.TB) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(testDeadline))
	return c.(*net.TCPConn)
}

// upstreamServer is a Go TCP server; every connection runs handle, whose
// error is reported on errs.
type upstreamServer struct {
	addr string
	errs chan error
}

func startUpstream(t testing.TB, handle func(c *net.TCPConn) error) *upstreamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &upstreamServer{addr: ln.Addr().String(), errs: make(chan error, 64)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.SetDeadline(time.Now().Add(testDeadline))
				err := handle(c.(*net.TCPConn))
				_ = c.Close()
				s.errs <- err
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return s
}

// result waits for one upstream handler to return.
func (s *upstreamServer) result(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.errs:
		return err
	case <-time.After(testDeadline):
		t.Fatal("upstream handler did not finish")
		return nil
	}
}

package engine

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/internal/gnetx"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/routes"
	"github.com/proxyto/proxyto/tunnel"
	"github.com/proxyto/proxyto/upstream"
)

// Getting an upstream connection: an exchange asks the dial pool, which
// resolves, checks and connects off the event loops (upstream.Dialer), trying
// the entries of the upstream list in order, and enrolls the winner on the
// exchange's loop; gnet then calls OnOpen there, and the exchange takes the
// connection (upstreamOpened). A failure comes back as dialFailed. Pooled
// connections (pool.go) skip all of this.

// upstreams are the upstreams one exchange tries, in order, and what its
// dial needs. The entries belong to an X-Proxy-To list (or
// --default-upstream) or to a route; ord maps an attempt to an entry.
type upstreams struct {
	list  *httpparse.UpstreamList // nil for a route
	own   bool                    // parsed from X-Proxy-To: goes back to the loop's free list
	route *routes.Route           // the selected route, or nil
	ord   [httpparse.MaxUpstreams]int
	n     int // attempts: ord[:n]

	authSeen []byte // "user:password" to verify off the loop first, if any
	gen      uint32 // bumped when a dial is abandoned: its late result is dropped
}

// release gives a list parsed from X-Proxy-To back to the loop.
func (u *upstreams) release(ls *loopState) {
	if u.own {
		ls.putList(u.list)
	}
	u.list, u.own, u.route, u.n = nil, false, nil, 0
}

// entry is the upstream of attempt k.
func (u *upstreams) entry(k int) *httpparse.Upstream {
	if u.route != nil {
		return u.route.Upstream(u.ord[k])
	}
	return &u.list.Upstreams()[u.ord[k]]
}

// key is the health identity of attempt k's upstream.
func (u *upstreams) key(tr *health.Tracker, k int) health.Key {
	if u.route != nil {
		return u.route.Key(u.ord[k])
	}
	return tr.Key(u.entry(k))
}

// routeID is the route's metric ID, or -1 for a list.
func (u *upstreams) routeID() int {
	if u.route != nil {
		return u.route.ID()
	}
	return -1
}

// upstreamConn is the gnet context of an upstream connection, from its dial
// (or its pool entry) until it closes: its End for the relays, its owner,
// and its pool bookkeeping. Only its loop touches it.
type upstreamConn struct {
	end  tunnel.End
	ls   *loopState
	x    exchange // owner; nil while pooled
	gen  uint32   // the owner's dial generation it answers
	idx  int      // attempt of the owner's upstreams it connects to
	addr []byte   // the socks5 target address proxyto resolved, if any
	here bool     // connected by the loop itself (dialHere): it may not have opened
	// dialStart is when a dial on the loop began, until its outcome is
	// reported (the first byte back proves the connect; a close before it
	// with a connect error refutes it).
	dialStart time.Time

	// While pooled.
	pk    *poolKey
	since int64 // unix ns it was pooled
	dead  bool  // taken, or closed by the pool
}

// traffic handles bytes from the upstream.
func (u *upstreamConn) traffic() {
	if !u.dialStart.IsZero() {
		u.ls.e.cfg.Observer.UpstreamDialed(time.Since(u.dialStart), proxystatus.None)
		u.dialStart = time.Time{}
	}
	if u.x == nil {
		// An idle pooled connection must stay silent: anything it sends
		// makes it unusable.
		c := u.end.Conn()
		if !u.dead {
			u.pk.closedByUpstream(u, time.Now().UnixNano())
			u.dead = true
			u.end.Close()
		}
		_, _ = c.Discard(-1)
		return
	}
	u.x.upstreamTraffic(u)
}

// handshakeDeadline is when the answer to a handshake begun at start is
// due: the response header timeout after it, but for a socket the loop is
// still connecting, the dial timeout after the connect began if that comes
// first (gnet opens such a socket at once, so the handshake starts before
// the connect completes).
func (u *upstreamConn) handshakeDeadline(start time.Time) int64 {
	cfg := &u.ls.e.cfg
	d := start.Add(cfg.ResponseHeaderTimeout).UnixNano()
	if u.here && !u.dialStart.IsZero() {
		d = min(d, u.dialStart.Add(cfg.DialTimeout).UnixNano())
	}
	return d
}

// connectExpired decides a passed handshake deadline of u (handshake
// begun at start). A socket the loop is still connecting failed its dial:
// the answer is connection_timeout. One that connected and has not
// answered yet waits on until the response deadline, returned as next.
// (nil, 0): the response header timeout itself passed.
func (u *upstreamConn) connectExpired(now int64, start time.Time) (pe *proxystatus.Error, next int64) {
	if !u.here || u.dialStart.IsZero() {
		return nil, 0
	}
	if c := u.end.Conn(); c != nil {
		if _, err := unix.Getpeername(c.Fd()); err == unix.ENOTCONN {
			pe = proxystatus.New(proxystatus.ConnectionTimeout, "upstream did not accept the connection in time")
			u.ls.e.cfg.Observer.UpstreamDialed(time.Since(u.dialStart), pe.Type)
			u.dialStart = time.Time{}
			return pe, 0
		}
	}
	if d := start.Add(u.ls.e.cfg.ResponseHeaderTimeout).UnixNano(); now < d {
		return nil, d
	}
	return nil, 0
}

// closed runs in OnClose for the upstream connection. A connect that
// failed after it started (a dial on the loop) shows as the socket's error,
// which says more than gnet's: connection refused rather than EOF.
func (u *upstreamConn) closed(ls *loopState, err error) {
	if u.x == nil {
		u.end.Gone()
		ls.pool.drop(u)
		return
	}
	if c := u.end.Conn(); c != nil && u.here {
		if v, gerr := unix.GetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && v != 0 {
			err = os.NewSyscallError("connect", syscall.Errno(v))
		}
		if !u.dialStart.IsZero() && connectFailed(err) {
			ls.e.cfg.Observer.UpstreamDialed(time.Since(u.dialStart), upstream.Classify(err).Type)
			u.dialStart = time.Time{}
		}
	}
	u.x.upstreamClosed(u, err)
}

// connectFailed reports whether err says the connection never opened.
func connectFailed(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ETIMEDOUT)
}

// handshake feeds what u has buffered to hs, writing what hs has to send,
// until hs is done, needs more bytes, or fails. Once done, the returned
// step's Reply holds the head for the client (in the loop's reply buffer,
// valid until the next handshake on this loop).
func (ls *loopState) handshake(u *upstreamConn, hs upstream.Handshake, rec *access) (done bool, reply []byte, err error) {
	for {
		c := u.end.Conn()
		if c == nil {
			return false, nil, nil
		}
		buf, _ := c.Peek(-1)
		if len(buf) == 0 {
			return false, nil, nil
		}
		st, err := hs.Feed(buf, ls.scratch[:0], ls.reply[:0])
		ls.scratch, ls.reply = st.Send[:0], st.Reply[:0]
		if err != nil {
			return false, nil, err
		}
		if st.N == 0 && !st.Done {
			return false, nil, nil
		}
		_, _ = c.Discard(st.N)
		if len(st.Send) > 0 {
			rec.headIn += int64(len(st.Send))
			_ = u.end.Write(st.Send)
		}
		if st.Done {
			return true, st.Reply, nil
		}
	}
}

// openUpstream runs in OnOpen for a connection a dial enrolled.
func (e *Engine) openUpstream(c gnet.Conn, u *upstreamConn) ([]byte, gnet.Action) {
	ls, err := e.loopOf(c)
	if err != nil {
		return nil, gnet.Close
	}
	u.end.Attach(ls.relay, c)
	u.ls = ls
	c.SetContext(u)
	if !u.x.upstreamOpened(u) {
		c.SetContext(nil)
		return nil, gnet.Close
	}
	return nil, gnet.None
}

// dialJob is one request for an upstream connection: its failover list, in
// order, and what must be checked off the loop first.
type dialJob struct {
	x       exchange
	gen     uint32
	el      gnet.EventLoop
	targets []dialTarget
	route   int    // the route's metric ID, or -1, for ejections
	auth    []byte // "user:password" to VerifyUser first (bcrypt), if any
	resolve string // target host proxyto resolves itself (socks5), if any
	tried   int    // attempt tried last, for the access log
}

// dialTarget is one attempt of a dial job. A loop that finds the name in
// the cache (dnscache.Resolver.Cached) may fill t.Addrs: the worker then
// dials without resolving.
type dialTarget struct {
	idx int        // attempt
	key health.Key // for health reports
	t   upstream.Target
}

// dial hands ups to the dial pool for x, whose tunnel or request goes to
// authority (host:port). It returns the deadline by which the dial must
// have ended.
func (ls *loopState) dial(x exchange, ups *upstreams, authority []byte) int64 {
	ups.gen++
	// A dial that hangs past its own timeouts still ends here.
	per := ls.e.cfg.DialTimeout + time.Second
	deadline := time.Now().Add(per * time.Duration(ups.n)).UnixNano()
	if ls.dialHere(x, ups, authority) {
		return deadline
	}
	j := &dialJob{x: x, gen: ups.gen, el: ls.el, route: ups.routeID(), targets: make([]dialTarget, 0, ups.n)}
	socks := false
	for k := range ups.n {
		u := ups.entry(k)
		j.targets = append(j.targets, dialTarget{
			idx: k,
			key: ups.key(ls.e.health, k),
			t:   upstream.Target{Host: string(u.Host), Port: u.Port, TLS: u.Scheme == httpparse.SchemeHTTPS},
		})
		socks = socks || u.Scheme == httpparse.SchemeSOCKS5
	}
	if len(ups.authSeen) > 0 {
		j.auth = append([]byte(nil), ups.authSeen...)
	}
	if socks {
		if host, _, _, ok := httpparse.SplitHostPort(authority, 0); ok {
			j.resolve = string(host)
		}
	}
	ls.e.dials.submit(ls.e, j)
	return deadline
}

// dialHere connects on the loop itself when nothing needs to block: one
// upstream to try, plain TCP (no TLS handshake), its address known (an IP
// literal or a name in the cache; likewise a socks5 target), no client
// password left to verify. The socket connects without blocking and is
// registered with gnet from a loop task (gnetx.Register), so OnOpen comes as
// after a dial-pool dial, and the handshake's first bytes wait in gnet's
// buffer until the connect completes; a connect that then fails closes the
// connection with the socket's error (connection refused, unreachable,
// timed out). This saves the dial pool's two goroutine hand-offs and the
// Go poller's work: most of a tunnel's set-up. It reports false when the
// dial pool must do it.
func (ls *loopState) dialHere(x exchange, ups *upstreams, authority []byte) bool {
	if ups.n != 1 || len(ups.authSeen) > 0 {
		return false
	}
	u := ups.entry(0)
	if u.Scheme == httpparse.SchemeHTTPS {
		return false
	}
	e := ls.e
	var buf [4]netip.Addr
	addrs, hit, err := e.dns.Cached(buf[:0], u.Host)
	if !hit || err != nil || len(addrs) == 0 {
		return false
	}
	var target []byte
	if u.Scheme == httpparse.SchemeSOCKS5 {
		host, _, _, ok := httpparse.SplitHostPort(authority, 0)
		if !ok {
			return false
		}
		var tbuf [4]netip.Addr
		ta, hit, err := e.dns.Cached(tbuf[:0], host)
		if !hit || err != nil || len(ta) == 0 {
			return false
		}
		target = ta[0].AsSlice()
	}
	host := string(u.Host)
	var last *proxystatus.Error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, u.Port)
		if err := e.dialer.Allowed(host, ap); err != nil {
			last = upstream.Classify(err)
			continue
		}
		start := time.Now()
		fd, sa, err := connectNonblocking(ap)
		if err != nil {
			last = upstream.Classify(err)
			e.cfg.Observer.UpstreamDialed(time.Since(start), last.Type)
			continue
		}
		uc := &upstreamConn{x: x, gen: ups.gen, idx: 0, addr: target, here: true, dialStart: start}
		remote := net.TCPAddrFromAddrPort(ap)
		// Registered from a task, after this callback: the exchange hears
		// of its connection in OnOpen, never inside its own dial call.
		err = ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if err := gnetx.Register(ls.el, fd, sa, remote, uc); err != nil {
				x.dialFailed(uc.gen, 0, proxystatus.New(proxystatus.ProxyInternalError, "could not register the upstream connection"))
			}
			return nil
		}))
		if err != nil {
			_ = unix.Close(fd) // the loop is stopping; the exchange's deadline ends it
		}
		return true
	}
	if last == nil {
		last = proxystatus.New(proxystatus.DNSError, "upstream name has no usable address")
	}
	if countsAgainst(last) {
		e.report(ups.key(e.health, 0), ups.routeID(), false)
	}
	gen := ups.gen
	_ = ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		x.dialFailed(gen, 0, last)
		return nil
	}))
	return true
}

// connectNonblocking starts a TCP connect to ap on a non-blocking socket
// with TCP_NODELAY (as Go's dialer sets it), and returns the socket while
// the connect is in progress (or done).
func connectNonblocking(ap netip.AddrPort) (int, unix.Sockaddr, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		return -1, nil, os.NewSyscallError("connect", err)
	}
	return fd, sa, nil
}

// dialPool runs dial jobs on at most n goroutines. Workers stay for a while
// after their last job (dialing is bursty, and a fresh goroutine pays for
// growing its stack on every dial). submit never blocks a loop.
type dialPool struct {
	n    int
	jobs chan *dialJob // queued jobs

	mu            sync.Mutex
	workers, idle int
}

// dialWorkerIdle is how long an idle dial worker waits for a job.
const dialWorkerIdle = 30 * time.Second

// dialQueue bounds jobs waiting for a worker; past it a dial fails at once.
const dialQueue = 1 << 16

func (p *dialPool) init(n int) {
	p.n = n
	p.jobs = make(chan *dialJob, dialQueue)
}

func (p *dialPool) submit(e *Engine, j *dialJob) {
	select {
	case p.jobs <- j:
	default:
		e.post(j, proxystatus.New(proxystatus.ProxyInternalError, "too many upstream dials queued"))
		return
	}
	p.mu.Lock()
	spawn := p.idle == 0 && p.workers < p.n
	if spawn {
		p.workers++
	}
	p.mu.Unlock()
	if spawn {
		go p.work(e)
	}
}

// work runs jobs until none came for dialWorkerIdle. A worker counts as idle
// only while it waits, and re-checks the queue after leaving the count, so a
// job queued as it quits is never stranded.
func (p *dialPool) work(e *Engine) {
	idle := time.NewTimer(dialWorkerIdle)
	defer idle.Stop()
	for {
		p.mu.Lock()
		p.idle++
		p.mu.Unlock()
		idle.Reset(dialWorkerIdle)
		select {
		case j := <-p.jobs:
			p.mu.Lock()
			p.idle--
			p.mu.Unlock()
			e.runDial(j)
			continue
		case <-idle.C:
		}
		p.mu.Lock()
		p.idle--
		p.workers--
		p.mu.Unlock()
		select {
		case j := <-p.jobs:
			p.mu.Lock()
			p.workers++
			p.mu.Unlock()
			e.runDial(j)
		default:
			return
		}
	}
}

// runDial runs off the loops: it authenticates, then tries each upstream in
// order until one connects. Every failure here happens before any byte of
// the request reached an upstream, so the next entry is always tried. The
// winner is enrolled on the exchange's loop, where OnOpen continues.
func (e *Engine) runDial(j *dialJob) {
	if j.auth != nil {
		user, pass, _ := bytes.Cut(j.auth, []byte{':'})
		if !e.cfg.Auth.VerifyUser(user, pass) {
			e.post(j, errAuthRequired)
			return
		}
	}
	ctx := context.Background()
	var targetAddr []byte
	if j.resolve != "" {
		addrs, err := e.dialer.Resolve(ctx, j.resolve)
		if err != nil {
			e.post(j, upstream.Classify(err))
			return
		}
		targetAddr = addrs[0].AsSlice()
	}
	var last *proxystatus.Error
	for _, dt := range j.targets {
		j.tried = dt.idx
		start := time.Now()
		c, err := e.dialer.Dial(ctx, dt.t)
		if err != nil {
			last = upstream.Classify(err)
			e.cfg.Observer.UpstreamDialed(time.Since(start), last.Type)
			if countsAgainst(last) {
				e.report(dt.key, j.route, false)
			}
			continue
		}
		e.cfg.Observer.UpstreamDialed(time.Since(start), proxystatus.None)
		u := &upstreamConn{x: j.x, gen: j.gen, idx: dt.idx, addr: targetAddr}
		// The registration's result is not awaited: waiting would cost
		// one more thread hand-off per dial. The exchange hears of
		// success in OnOpen; a failure (the engine is stopping) leaves
		// it to its deadline.
		if _, err := j.el.Enroll(gnet.NewContext(ctx, u), c); err != nil {
			_ = c.Close()
			e.post(j, proxystatus.New(proxystatus.ProxyInternalResponse, "proxyto is shutting down"))
		}
		return
	}
	if last == nil {
		last = proxystatus.New(proxystatus.ProxyInternalError, "no upstream to dial")
	}
	e.post(j, last)
}

// post delivers a dial failure to the exchange's loop.
func (e *Engine) post(j *dialJob, pe *proxystatus.Error) {
	_ = j.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		j.x.dialFailed(j.gen, j.tried, pe)
		return nil
	}))
}

func addrFromSlice(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap()
}

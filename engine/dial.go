package engine

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/httpparse"
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
	x    exchange // owner; nil while pooled
	gen  uint32   // the owner's dial generation it answers
	idx  int      // attempt of the owner's upstreams it connects to
	addr []byte   // the socks5 target address proxyto resolved, if any

	// While pooled.
	pk    *poolKey
	since int64 // unix ns it was pooled
	dead  bool  // taken, or closed by the pool
}

// traffic handles bytes from the upstream.
func (u *upstreamConn) traffic() {
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

// closed runs in OnClose for the upstream connection.
func (u *upstreamConn) closed(ls *loopState, err error) {
	if u.x == nil {
		u.end.Gone()
		ls.pool.drop(u)
		return
	}
	u.x.upstreamClosed(u, err)
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
	// A dial that hangs past its own timeouts still ends here.
	per := ls.e.cfg.DialTimeout + time.Second
	return time.Now().Add(per * time.Duration(ups.n)).UnixNano()
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

package engine

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/upstream"
)

// dialJob is one request for an upstream connection: its failover list, in
// order, and what must be checked off the loop first.
type dialJob struct {
	s       *session
	gen     uint32
	el      gnet.EventLoop
	targets []dialTarget
	auth    []byte // Proxy-Authorization to Verify first (bcrypt), if any
	resolve string // target host proxyto resolves itself (socks5), if any
	tried   int    // index of the last upstream tried, for the access log
}

type dialTarget struct {
	idx int
	t   upstream.Target
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
			e.dial(j)
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
			e.dial(j)
		default:
			return
		}
	}
}

// dial runs off the loops: it authenticates, then tries each upstream in
// order until one connects. Every failure here happens before any byte of
// the request reached an upstream, so the next entry is always tried. The
// winner is enrolled on the session's loop, where OnOpen continues.
func (e *Engine) dial(j *dialJob) {
	if j.auth != nil && !e.cfg.Auth.Verify(j.auth) {
		e.post(j, errAuthRequired)
		return
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
			continue
		}
		e.cfg.Observer.UpstreamDialed(time.Since(start), proxystatus.None)
		l := &upLink{s: j.s, gen: j.gen, idx: dt.idx, addr: targetAddr}
		// The registration's result is not awaited: waiting would cost
		// one more thread hand-off per dial. The session hears of success
		// in OnOpen; a failure (the engine is stopping) leaves it to its
		// deadline.
		if _, err := j.el.Enroll(gnet.NewContext(ctx, l), c); err != nil {
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

// post delivers a dial failure to the session's loop.
func (e *Engine) post(j *dialJob, pe *proxystatus.Error) {
	_ = j.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		j.s.dialFailed(j.gen, j.tried, pe)
		return nil
	}))
}

func addrFromSlice(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap()
}

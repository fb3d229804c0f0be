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
}

type dialTarget struct {
	idx int
	t   upstream.Target
}

// dialPool runs dial jobs on at most n goroutines, which exist only while
// there is work; further jobs wait in a FIFO. submit never blocks a loop.
type dialPool struct {
	mu      sync.Mutex
	n, busy int
	queue   []*dialJob
}

func (p *dialPool) init(n int) { p.n = n }

func (p *dialPool) submit(e *Engine, j *dialJob) {
	p.mu.Lock()
	if p.busy >= p.n {
		p.queue = append(p.queue, j)
		p.mu.Unlock()
		return
	}
	p.busy++
	p.mu.Unlock()
	go p.work(e, j)
}

func (p *dialPool) work(e *Engine, j *dialJob) {
	for j != nil {
		e.dial(j)
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.busy--
			p.mu.Unlock()
			return
		}
		j = p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
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
		start := time.Now()
		c, err := e.dialer.Dial(ctx, dt.t)
		if err != nil {
			last = upstream.Classify(err)
			e.cfg.Observer.UpstreamDialed(time.Since(start), last.Type)
			continue
		}
		e.cfg.Observer.UpstreamDialed(time.Since(start), proxystatus.None)
		l := &upLink{s: j.s, gen: j.gen, idx: dt.idx, addr: targetAddr}
		ch, err := j.el.Enroll(gnet.NewContext(ctx, l), c)
		if err != nil {
			_ = c.Close()
			e.post(j, proxystatus.New(proxystatus.ProxyInternalResponse, "proxyto is shutting down"))
			return
		}
		if r := <-ch; r.Err != nil {
			e.post(j, proxystatus.New(proxystatus.ProxyInternalError, "could not register the upstream connection"))
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
		j.s.dialFailed(j.gen, pe)
		return nil
	}))
}

func addrFromSlice(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap()
}

package engine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/auth"
	"github.com/proxyto/proxyto/health"
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/tunnel"
)

// loopState is what the engine keeps per gnet event loop. Everything but the
// atomics is touched only on that loop.
type loopState struct {
	e     *Engine
	el    gnet.EventLoop
	relay *tunnel.Loop

	clients []*clientConn // every live client connection of this loop, for deadlines
	service []servicer    // what waits for Service (paused pipes, flushes)

	hot        atomic.Bool  // service is non-empty: scan every tick
	lastScan   atomic.Int64 // unix ns of the last deadline scan
	scanQueued atomic.Bool  // a scan is queued on the loop
	scanRun    gnet.Runnable

	scratch []byte // heads built for a write; never kept across callbacks
	reply   []byte // a handshake's answer for the client; likewise
	pool    upstreamPool

	// The loop's parsers: a head is parsed and acted on within one
	// callback, so connections share them instead of carrying their own.
	req   httpparse.Request
	resp  httpparse.Response
	proxy httpparse.ProxyHeader
	rec   Record // the access record being reported (Observer.Done keeps none)
	// freeLists recycles X-Proxy-To lists (800 bytes each) between
	// exchanges, so that idle connections do not hold one.
	freeLists []*httpparse.UpstreamList
	// Scratch for choosing a request's upstreams (select.go): decoded
	// credentials, and an X-Proxy-To list's health.
	cred   [auth.MaxCredentials]byte
	keys   [httpparse.MaxUpstreams]health.Key
	states [httpparse.MaxUpstreams]*health.State
}

// servicer is something that waits for the loop's periodic Service: a
// paused pipe whose destination must drain, a sink to flush, a flush before
// a close.
type servicer interface {
	// service does what became possible and reports whether it still
	// needs service.
	service() (more bool)
	// watched is the flag that keeps it on the list at most once.
	watched() *bool
}

// loopOf returns the state of c's loop, creating it on first use. It runs on
// c's loop; the slice of loops is copied on write so the ticker reads it
// without locking.
func (e *Engine) loopOf(c gnet.Conn) (*loopState, error) {
	el := c.EventLoop()
	for _, ls := range *e.loops.Load() {
		if ls.el == el {
			return ls, nil
		}
	}
	rl, err := tunnel.NewLoop(c, e.relay)
	if err != nil {
		return nil, err
	}
	ls := &loopState{e: e, el: el, relay: rl}
	ls.pool.init(e)
	ls.scanRun = gnet.RunnableFunc(func(context.Context) error {
		ls.scan()
		return nil
	})
	e.loopsMu.Lock()
	old := *e.loops.Load()
	loops := append(append(make([]*loopState, 0, len(old)+1), old...), ls)
	e.loops.Store(&loops)
	e.loopsMu.Unlock()
	return ls, nil
}

// add registers cc for deadline scans.
func (ls *loopState) add(cc *clientConn) {
	cc.idx = len(ls.clients)
	ls.clients = append(ls.clients, cc)
}

// remove unregisters cc (swap-delete).
func (ls *loopState) remove(cc *clientConn) {
	i := cc.idx
	if i < 0 || i >= len(ls.clients) || ls.clients[i] != cc {
		return
	}
	last := len(ls.clients) - 1
	ls.clients[i] = ls.clients[last]
	ls.clients[i].idx = i
	ls.clients[last] = nil
	ls.clients = ls.clients[:last]
	cc.idx = -1
}

// watch puts s on the service list until it needs no more service.
func (ls *loopState) watch(s servicer) {
	w := s.watched()
	if *w {
		return
	}
	*w = true
	ls.service = append(ls.service, s)
	if !ls.hot.Swap(true) {
		select {
		case ls.e.hot <- struct{}{}:
		default:
		}
	}
}

// scan runs on the loop: services what waits, then, at most every 250 ms,
// enforces deadlines.
func (ls *loopState) scan() {
	ls.scanQueued.Store(false)
	if len(ls.service) > 0 {
		keep := ls.service[:0]
		for _, s := range ls.service {
			if s.service() {
				keep = append(keep, s)
			} else {
				*s.watched() = false
			}
		}
		for i := len(keep); i < len(ls.service); i++ {
			ls.service[i] = nil
		}
		ls.service = keep
		ls.hot.Store(len(keep) > 0)
	}
	now := time.Now().UnixNano()
	if now-ls.lastScan.Load() < int64(250*time.Millisecond) {
		return
	}
	ls.lastScan.Store(now)
	ls.pool.expire(now)
	// Iterate backwards: expiring a connection may remove it (swap-delete).
	for i := len(ls.clients) - 1; i >= 0; i-- {
		if i >= len(ls.clients) {
			continue
		}
		cc := ls.clients[i]
		if cc.deadline != 0 && now >= cc.deadline {
			cc.expire(now)
		}
	}
}

// closeIdle closes client connections that wait for a request (or for the
// PROXY header before it), and pooled upstream connections (draining).
func (ls *loopState) closeIdle() {
	ls.pool.closeAll()
	for i := len(ls.clients) - 1; i >= 0; i-- {
		if i >= len(ls.clients) {
			continue
		}
		if cc := ls.clients[i]; (cc.st == cReadingHead || cc.st == cAwaitingProxy) && cc.headStart == 0 {
			cc.end.Close()
		}
	}
}

// getList returns an empty upstream list for an exchange to parse into.
func (ls *loopState) getList() *httpparse.UpstreamList {
	if n := len(ls.freeLists); n > 0 {
		l := ls.freeLists[n-1]
		ls.freeLists[n-1] = nil
		ls.freeLists = ls.freeLists[:n-1]
		return l
	}
	return new(httpparse.UpstreamList)
}

// putList recycles l; at most 256 are kept per loop.
func (ls *loopState) putList(l *httpparse.UpstreamList) {
	if l != nil && len(ls.freeLists) < 256 {
		ls.freeLists = append(ls.freeLists, l)
	}
}

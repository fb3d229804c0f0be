package engine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/tunnel"
)

// loopState is what the engine keeps per gnet event loop. Everything but the
// atomics is touched only on that loop.
type loopState struct {
	e      *Engine
	el     gnet.EventLoop
	poller tunnel.Poller

	sessions []*session // every live session of this loop, for deadlines
	service  []*session // sessions whose relay needs Service

	hot        atomic.Bool  // service is non-empty: scan every tick
	lastScan   atomic.Int64 // unix ns of the last deadline scan
	scanQueued atomic.Bool  // a scan is queued on the loop
	scanRun    gnet.Runnable

	scratch []byte // response building; never kept across callbacks
	pool    upstreamPool

	// The loop's parsers: a head is parsed and acted on within one
	// callback, so sessions share them instead of carrying their own.
	req  httpparse.Request
	resp httpparse.Response
	rec  Record    // the access record being reported (Observer.Done keeps none)
	iov  [2][]byte // head and first body bytes of a response, written together
	// freeLists recycles X-Proxy-To lists (800 bytes each) between
	// exchanges, so that idle sessions do not hold one.
	freeLists []*httpparse.UpstreamList
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
	p, err := tunnel.PollerOf(c)
	if err != nil {
		return nil, err
	}
	ls := &loopState{e: e, el: el, poller: p}
	ls.pool.init(e.cfg)
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

// add registers s for deadline scans.
func (ls *loopState) add(s *session) {
	s.idx = len(ls.sessions)
	ls.sessions = append(ls.sessions, s)
}

// remove unregisters s (swap-delete).
func (ls *loopState) remove(s *session) {
	i := s.idx
	if i < 0 || i >= len(ls.sessions) || ls.sessions[i] != s {
		return
	}
	last := len(ls.sessions) - 1
	ls.sessions[i] = ls.sessions[last]
	ls.sessions[i].idx = i
	ls.sessions[last] = nil
	ls.sessions = ls.sessions[:last]
	s.idx = -1
}

// watch puts s on the service list until its relay needs no more service.
func (ls *loopState) watch(s *session) {
	if s.serviced {
		return
	}
	s.serviced = true
	ls.service = append(ls.service, s)
	ls.hot.Store(true)
}

// scan runs on the loop: services relays, then, at most every 250 ms,
// enforces deadlines.
func (ls *loopState) scan() {
	ls.scanQueued.Store(false)
	if len(ls.service) > 0 {
		keep := ls.service[:0]
		for _, s := range ls.service {
			s.service()
			if s.needsService() {
				keep = append(keep, s)
			} else {
				s.serviced = false
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
	// Iterate backwards: expiring a session may remove it (swap-delete).
	for i := len(ls.sessions) - 1; i >= 0; i-- {
		if i >= len(ls.sessions) {
			continue
		}
		s := ls.sessions[i]
		if s.deadline != 0 && now >= s.deadline {
			s.expire(now)
		}
	}
}

// closeIdle closes client connections that wait for a request, and pooled
// upstream connections (draining).
func (ls *loopState) closeIdle() {
	ls.pool.closeAll()
	for i := len(ls.sessions) - 1; i >= 0; i-- {
		if i >= len(ls.sessions) {
			continue
		}
		if s := ls.sessions[i]; s.state == stateReadingHead && s.headStart == 0 {
			s.closeClient()
		}
	}
}

// getList returns an empty upstream list for a session to parse into.
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

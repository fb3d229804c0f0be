package engine

import (
	"syscall"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/httpparse"
)

// gnetConn is gnet.Conn, named shortly for the forwarding code.
type gnetConn = gnet.Conn

// upstreamPool keeps idle connections to http/https upstreams per loop (a
// gnet connection serves only its own loop), keyed by upstream address and
// credentials, newest first. A connection enters only after a cleanly
// finished exchange whose response allowed reuse. Keys stay while in use, so
// the steady state allocates nothing; the deadline scan drops keys that have
// been empty for a pool timeout.
type upstreamPool struct {
	idle    map[string]*poolKey
	maxIdle int
	timeout int64
	keyBuf  []byte
}

// poolKey is the idle list of one (upstream, credentials), and what the
// pool learnt about that upstream's keep-alive behaviour.
type poolKey struct {
	key      string
	conns    []*pooledConn
	lastUsed int64
	// closes counts pooled connections the upstream closed soon after
	// their response, in a row; at closesToStop pooling stops until
	// noPoolUntil. Some upstreams (Debian's tinyproxy 1.11) answer with
	// keep-alive-looking heads and close every connection a moment later;
	// pooling them only produces stale connections.
	closes      int
	noPoolUntil int64
}

// Keep-alive learning: an upstream that closed closesToStop pooled
// connections in a row within closeWindow of their response is not pooled
// for noPoolFor.
const (
	closesToStop = 3
	closeWindow  = int64(2 * time.Second)
	noPoolFor    = int64(time.Minute)
)

// pooledConn is the gnet context of an idle pooled connection.
type pooledConn struct {
	c     gnet.Conn
	pk    *poolKey
	since int64
	dead  bool
}

func (p *upstreamPool) init(cfg Config) {
	p.idle = make(map[string]*poolKey)
	p.maxIdle = cfg.PoolMaxIdlePerKey
	p.timeout = int64(cfg.PoolIdleTimeout)
}

// key builds the pool key of entry idx of l into p.keyBuf: scheme, address
// and credentials (so different credentials never share a connection).
func (p *upstreamPool) key(l *httpparse.UpstreamList, idx int) []byte {
	u := &l.Upstreams()[idx]
	k := append(p.keyBuf[:0], byte(u.Scheme))
	k = u.AppendHostPort(k)
	if u.HasAuth {
		k = append(k, 0)
		k = append(k, u.User...)
		k = append(k, 0)
		k = append(k, u.Pass...)
	}
	p.keyBuf = k
	return k
}

// poolable reports whether entry idx of l may use the pool at all.
func (p *upstreamPool) poolable(l *httpparse.UpstreamList, idx int) bool {
	sc := l.Upstreams()[idx].Scheme
	return p.maxIdle >= 0 && (sc == httpparse.SchemeHTTP || sc == httpparse.SchemeHTTPS)
}

// get takes an idle connection for entry idx of l, or returns nil (always
// when ok is false). The entry comes back with it, for put to reuse.
func (p *upstreamPool) get(l *httpparse.UpstreamList, idx int, ok bool) (gnet.Conn, *pooledConn) {
	if !ok || !p.poolable(l, idx) {
		return nil, nil
	}
	pk := p.idle[string(p.key(l, idx))]
	if pk == nil {
		return nil, nil
	}
	now := time.Now().UnixNano()
	pk.lastUsed = now
	for n := len(pk.conns); n > 0; n = len(pk.conns) {
		pc := pk.conns[n-1]
		pk.conns[n-1] = nil
		pk.conns = pk.conns[:n-1]
		if pc.dead {
			continue
		}
		pc.dead = true
		if peerGone(pc.c) {
			// The upstream closed it (or sent stray bytes) and gnet has
			// not told us yet: never send a request on it.
			pk.closedByUpstream(pc, now)
			pc.c.SetContext(nil)
			_ = pc.c.Close()
			continue
		}
		return pc.c, pc
	}
	return nil, nil
}

// peerGone reports whether an idle connection can no longer carry a
// request: bytes wait in gnet's buffer, or a non-blocking MSG_PEEK on the
// socket sees EOF, stray bytes or an error. Only "would block" means alive.
// It is one system call, made only when a pooled connection is taken.
func peerGone(c gnet.Conn) bool {
	if c.InboundBuffered() > 0 {
		return true
	}
	var b [1]byte
	// A raw recvfrom: unix.Recvfrom's sockaddr would escape to the heap.
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(c.Fd()), uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN
}

// closedByUpstream learns from a pooled connection the upstream closed
// while it was idle: soon after its response, in a row, means the upstream
// does not keep connections alive whatever its heads say.
func (pk *poolKey) closedByUpstream(pc *pooledConn, now int64) {
	if now-pc.since > closeWindow {
		return // an ordinary idle timeout of the upstream
	}
	pk.closes++
	if pk.closes >= closesToStop {
		pk.closes = 0
		pk.noPoolUntil = now + noPoolFor
	}
}

// reused records that a reused connection carried a response: the upstream
// keeps connections alive after all.
func (pc *pooledConn) reused() {
	if pc != nil && pc.pk != nil {
		pc.pk.closes = 0
	}
}

// put parks s's upstream connection c, or closes it when the key is full.
// A connection that was pooled before reuses its entry, so the steady state
// of a kept-alive upstream allocates nothing.
func (p *upstreamPool) put(s *session, c gnet.Conn) {
	if !p.poolable(s.list, s.upIdx) {
		c.SetContext(nil)
		_ = c.Close()
		return
	}
	k := p.key(s.list, s.upIdx)
	pk := p.idle[string(k)]
	if pk == nil {
		pk = &poolKey{key: string(k)}
		p.idle[pk.key] = pk
	}
	now := time.Now().UnixNano()
	if len(pk.conns) >= p.maxIdle || now < pk.noPoolUntil {
		c.SetContext(nil)
		_ = c.Close()
		return
	}
	pc := s.upPool
	s.upPool = nil
	if pc == nil || pc.c != c || pc.pk != pk {
		pc = &pooledConn{c: c, pk: pk}
	}
	pc.since, pc.dead, pk.lastUsed = now, false, now
	c.SetContext(pc)
	pk.conns = append(pk.conns, pc)
}

// drop removes pc from the pool once gnet closed it. A connection the pool
// did not close itself was closed by the upstream.
func (p *upstreamPool) drop(pc *pooledConn) {
	if !pc.dead {
		pc.pk.closedByUpstream(pc, time.Now().UnixNano())
	}
	pc.dead = true
	list := pc.pk.conns
	for i, x := range list {
		if x == pc {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			pc.pk.conns = list[:len(list)-1]
			return
		}
	}
}

// expire closes connections idle longer than the pool timeout and forgets
// keys unused that long.
func (p *upstreamPool) expire(now int64) {
	for k, pk := range p.idle {
		for _, pc := range pk.conns {
			if !pc.dead && now-pc.since >= p.timeout {
				pc.dead = true
				_ = pc.c.Close()
			}
		}
		if len(pk.conns) == 0 && now-pk.lastUsed >= p.timeout {
			delete(p.idle, k)
		}
	}
}

// closeAll closes every idle connection (draining).
func (p *upstreamPool) closeAll() {
	for _, pk := range p.idle {
		for _, pc := range pk.conns {
			if !pc.dead {
				pc.dead = true
				_ = pc.c.Close()
			}
		}
	}
}

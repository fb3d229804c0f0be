package engine

import (
	"time"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/internal/gnetx"
)

// upstreamPool keeps idle connections to http/https upstreams per loop, keyed
// by upstream address and credentials, newest first. The pools stay in the
// engine, not in upstream/: they hold gnet connections, which serve only
// their own loop and whose lives gnet's callbacks drive. A connection enters
// only after a cleanly finished exchange whose response allowed reuse. Keys
// stay while in use, so the steady state allocates nothing; the deadline
// scan drops keys that have been empty for a pool timeout.
type upstreamPool struct {
	idle    map[string]*poolKey
	fds     *fdBudget // counts idle connections against the descriptor budget
	maxIdle int
	timeout int64
	keyBuf  []byte
}

// poolKey is the idle list of one (upstream, credentials), and what the
// pool learnt about that upstream's keep-alive behaviour.
type poolKey struct {
	key      string
	conns    []*upstreamConn
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

func (p *upstreamPool) init(e *Engine) {
	cfg := e.cfg
	p.fds = &e.fds
	p.idle = make(map[string]*poolKey)
	p.maxIdle = cfg.PoolMaxIdlePerKey
	p.timeout = int64(cfg.PoolIdleTimeout)
}

// key builds the pool key of u into p.keyBuf: scheme, address and
// credentials (so different credentials never share a connection).
func (p *upstreamPool) key(u *httpparse.Upstream) []byte {
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

// poolable reports whether connections to u may be pooled at all.
func (p *upstreamPool) poolable(u *httpparse.Upstream) bool {
	return p.maxIdle >= 0 && !u.Scheme.IsSOCKS()
}

// get takes an idle connection to u, or returns nil.
func (p *upstreamPool) get(u *httpparse.Upstream) *upstreamConn {
	if !p.poolable(u) {
		return nil
	}
	pk := p.idle[string(p.key(u))]
	if pk == nil {
		return nil
	}
	now := time.Now().UnixNano()
	pk.lastUsed = now
	for n := len(pk.conns); n > 0; n = len(pk.conns) {
		uc := pk.conns[n-1]
		pk.conns[n-1] = nil
		pk.conns = pk.conns[:n-1]
		p.fds.pooled.Add(-1)
		if uc.dead {
			continue
		}
		uc.dead = true
		if gnetx.PeerGone(uc.end.Conn()) {
			// The upstream closed it (or sent stray bytes) and gnet has
			// not told us yet: never send a request on it.
			pk.closedByUpstream(uc, now)
			uc.end.Close()
			continue
		}
		return uc
	}
	return nil
}

// closedByUpstream learns from a pooled connection the upstream closed:
// soon after its response, in a row, means the upstream does not keep
// connections alive whatever its heads say.
func (pk *poolKey) closedByUpstream(uc *upstreamConn, now int64) {
	if pk == nil || now-uc.since > closeWindow {
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
func (pk *poolKey) reused() {
	if pk != nil {
		pk.closes = 0
	}
}

// put parks uc, an idle connection to u, or closes it when the key is full
// or the upstream is known to close such connections. A connection's pool
// entry is its upstreamConn, so the steady state allocates nothing.
func (p *upstreamPool) put(uc *upstreamConn, u *httpparse.Upstream) {
	if !p.poolable(u) {
		uc.end.Close()
		return
	}
	k := p.key(u)
	pk := p.idle[string(k)]
	if pk == nil {
		pk = &poolKey{key: string(k)}
		p.idle[pk.key] = pk
	}
	now := time.Now().UnixNano()
	if len(pk.conns) >= p.maxIdle || now < pk.noPoolUntil || !p.fds.mayPool() {
		uc.end.Close()
		return
	}
	uc.x, uc.pk, uc.since, uc.dead = nil, pk, now, false
	pk.lastUsed = now
	pk.conns = append(pk.conns, uc)
	p.fds.pooled.Add(1)
}

// drop removes uc from the pool once gnet closed it. A connection the pool
// did not close itself was closed by the upstream.
func (p *upstreamPool) drop(uc *upstreamConn) {
	if !uc.dead {
		uc.pk.closedByUpstream(uc, time.Now().UnixNano())
	}
	uc.dead = true
	if uc.pk == nil {
		return
	}
	list := uc.pk.conns
	for i, x := range list {
		if x == uc {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			uc.pk.conns = list[:len(list)-1]
			p.fds.pooled.Add(-1)
			return
		}
	}
}

// expire closes connections idle longer than the pool timeout and forgets
// keys unused that long.
func (p *upstreamPool) expire(now int64) {
	for k, pk := range p.idle {
		for _, uc := range pk.conns {
			if !uc.dead && now-uc.since >= p.timeout {
				uc.dead = true
				uc.end.Close()
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
		for _, uc := range pk.conns {
			if !uc.dead {
				uc.dead = true
				uc.end.Close()
			}
		}
	}
}

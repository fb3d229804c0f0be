package engine

import (
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/httpparse"
)

// gnetConn is gnet.Conn, named shortly for the forwarding code.
type gnetConn = gnet.Conn

// upstreamPool keeps idle connections to http/https upstreams per loop (a
// gnet connection serves only its own loop), keyed by upstream address and
// credentials, newest first. A connection enters only after a cleanly
// finished exchange whose response allowed reuse.
type upstreamPool struct {
	idle    map[string][]*pooledConn
	maxIdle int
	timeout int64
	keyBuf  []byte
}

// pooledConn is the gnet context of an idle pooled connection.
type pooledConn struct {
	c     gnet.Conn
	key   string
	since int64
	dead  bool
}

func (p *upstreamPool) init(cfg Config) {
	p.idle = make(map[string][]*pooledConn)
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

// get takes an idle connection for entry idx of l, or returns nil (always
// when ok is false).
func (p *upstreamPool) get(l *httpparse.UpstreamList, idx int, ok bool) gnet.Conn {
	if p.maxIdle < 0 || !ok {
		return nil
	}
	sc := l.Upstreams()[idx].Scheme
	if sc != httpparse.SchemeHTTP && sc != httpparse.SchemeHTTPS {
		return nil
	}
	k := p.key(l, idx)
	list := p.idle[string(k)]
	for len(list) > 0 {
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if !pc.dead {
			p.store(k, list)
			pc.dead = true
			return pc.c
		}
	}
	p.store(k, list)
	return nil
}

func (p *upstreamPool) store(k []byte, list []*pooledConn) {
	if len(list) == 0 {
		delete(p.idle, string(k))
		return
	}
	p.idle[string(k)] = list
}

// put parks s's upstream connection c, or closes it when the key is full.
func (p *upstreamPool) put(s *session, c gnet.Conn) {
	sc := s.list.Upstreams()[s.upIdx].Scheme
	k := p.key(s.list, s.upIdx)
	list := p.idle[string(k)]
	if p.maxIdle < 0 || len(list) >= p.maxIdle || (sc != httpparse.SchemeHTTP && sc != httpparse.SchemeHTTPS) {
		c.SetContext(nil)
		_ = c.Close()
		return
	}
	pc := &pooledConn{c: c, key: string(k), since: time.Now().UnixNano()}
	c.SetContext(pc)
	p.idle[pc.key] = append(list, pc)
}

// drop removes pc (closed, or expired) from the pool.
func (p *upstreamPool) drop(pc *pooledConn) {
	pc.dead = true
	list := p.idle[pc.key]
	for i, x := range list {
		if x == pc {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(p.idle, pc.key)
	} else {
		p.idle[pc.key] = list
	}
}

// expire closes connections idle longer than the pool timeout.
func (p *upstreamPool) expire(now int64) {
	for _, list := range p.idle {
		for _, pc := range list {
			if !pc.dead && now-pc.since >= p.timeout {
				pc.dead = true
				_ = pc.c.Close()
			}
		}
	}
}

// closeAll closes every idle connection (draining).
func (p *upstreamPool) closeAll() {
	for _, list := range p.idle {
		for _, pc := range list {
			if !pc.dead {
				pc.dead = true
				_ = pc.c.Close()
			}
		}
	}
}

package engine

import (
	"github.com/panjf2000/gnet/v2"
)

// handler is what gnet calls. It is unexported so that OnTraffic and
// friends are not the engine's API; it only finds whose connection an event
// is for. A connection's gnet context says what it is: an accepted client
// (*clientConn), an upstream (*upstreamConn, set by the dial before OnOpen),
// a TLS client until its OnOpen (*tlsClient), or nothing (a connection
// proxyto is done with).
type handler struct {
	gnet.BuiltinEventEngine
	e *Engine
}

// OnBoot records the gnet engine; its loops start right after.
func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.e.gnet = eng
	close(h.e.booted)
	return gnet.None
}

// OnOpen is called for a client accepted on the plain listener (no context
// yet), a client the TLS listener handed over (*tlsClient), or a dialed
// upstream.
func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	switch x := c.Context().(type) {
	case *upstreamConn:
		return h.e.openUpstream(c, x)
	case *tlsClient:
		c.SetContext(nil)
		return h.e.openClient(c, x.client, true)
	}
	return h.e.openClient(c, addrPortOf(c.RemoteAddr()), false)
}

// OnTraffic is called for readable bytes on either kind of connection.
func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *clientConn:
		x.traffic()
	case *upstreamConn:
		x.traffic()
	default:
		_, _ = c.Discard(-1)
	}
	return gnet.None
}

// OnClose is called once gnet closed a connection; nothing touches it after.
func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *clientConn:
		c.SetContext(nil)
		x.closed(err)
	case *upstreamConn:
		c.SetContext(nil)
		if ls, lerr := h.e.loopOf(c); lerr == nil {
			x.closed(ls, err)
		}
	}
	return gnet.None
}

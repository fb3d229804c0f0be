package engine

import (
	"time"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/tunnel"
	"github.com/proxyto/proxyto/upstream"
)

// A tunnel carries a CONNECT: dial the upstream, speak its protocol
// (upstream.Connect or upstream.Socks5), answer the client "200 Connection
// established", then relay bytes both ways (tunnel.Relay) until both sides
// are done. A plain-HTTP exchange whose upstream answered 101 becomes a
// tunnel too, relaying at once.

// tunnelExchange is one tunnel. It outlives its client connection when the
// client half-closed and the upstream still answers.
type tunnelExchange struct {
	cc    *clientConn
	up    *upstreamConn
	st    tunnelState
	setup *tunnelSetup // until the relay starts
	relay tunnel.Relay

	lastActive int64    // unix ns of the last byte relayed
	reported   [2]int64 // relay counts already reported
	isWatched  bool
}

// tunnelSetup is what only the set-up needs; an idle tunnel holds none of it.
type tunnelSetup struct {
	ups     upstreams
	e2e     []byte // the client's end-to-end header lines, for the CONNECT
	connect upstream.Connect
	socks   upstream.Socks5
	hs      upstream.Handshake
	hsStart time.Time
}

// setState is the one place a tunnel's state changes; the Observer hears
// of tunnels opening and closing from here.
func (t *tunnelExchange) setState(to tunnelState) {
	if !legal(tunnelNext[:], t.st, to) {
		t.cc.e.illegalTransition("tunnel", t.st, to)
		t.cc.abort()
	}
	switch {
	case to == tRelaying:
		t.cc.e.cfg.Observer.TunnelOpened()
	case t.st == tRelaying:
		t.cc.e.cfg.Observer.TunnelClosed()
	}
	t.st = to
}

// start begins a CONNECT: the client's end-to-end headers are copied (the
// Peek slice dies with this callback), the head is consumed, and the dial
// starts. The client's reads are masked at once: bytes it sends before the
// 200 stay queued in gnet and the socket, and so does a FIN, which gnet
// would otherwise take for the end of the whole connection. The relay starts
// with them (early data, then a half-close passed on to the upstream).
func (t *tunnelExchange) start(buf []byte, n int, ups upstreams) {
	cc := t.cc
	t.setup = &tunnelSetup{ups: ups}
	t.setup.e2e = cc.ls.req.AppendEndToEnd(nil, buf, false, true)
	cc.consumeHead(n)
	cc.end.Pause()
	t.setState(tDialing)
	cc.deadline = cc.ls.dial(t, &t.setup.ups, cc.rec.target)
}

// upstreamOpened takes the dialed connection and sends the handshake's
// first bytes.
func (t *tunnelExchange) upstreamOpened(u *upstreamConn) bool {
	cc := t.cc
	if t.st != tDialing || u.gen != t.setup.ups.gen || cc.end.Conn() == nil {
		return false
	}
	t.up = u
	s := t.setup
	entry := s.ups.entry(u.idx)
	cc.rec.upHost = entry.AppendHostPort(cc.rec.upHost[:0])
	if entry.Scheme.IsSOCKS() {
		host, port, _, _ := httpparse.SplitHostPort(cc.rec.target, 0)
		s.socks = upstream.Socks5{User: entry.User, Pass: entry.Pass, HasAuth: entry.HasAuth, Host: host, Port: port, Tunnel: true}
		if entry.Scheme == httpparse.SchemeSOCKS5 && len(u.addr) > 0 {
			s.socks.Addr = addrFromSlice(u.addr)
		}
		s.hs = &s.socks
	} else {
		s.connect = upstream.Connect{Upstream: entry, Authority: cc.rec.target, E2E: s.e2e, Resp: &cc.ls.resp, MaxHead: cc.e.cfg.MaxHeaderBytes}
		s.hs = &s.connect
	}
	t.setState(tHandshake)
	s.hsStart = time.Now()
	cc.deadline = u.handshakeDeadline(s.hsStart)
	out, _, err := s.hs.Start(cc.ls.scratch[:0])
	cc.ls.scratch = out[:0]
	if err != nil {
		t.fail(upstream.Classify(err))
		return true
	}
	cc.rec.headIn += int64(len(out))
	// gnet copies what it cannot send at once, so scratch may be reused.
	_ = u.end.Write(out)
	return true
}

// upstreamTraffic reads the handshake's answer, then relays.
func (t *tunnelExchange) upstreamTraffic(u *upstreamConn) {
	switch t.st {
	case tHandshake:
		t.handshake()
	case tRelaying:
		t.relay.OnTraffic(tunnel.Upstream)
		t.afterRelay()
	default:
		_, _ = u.end.Conn().Discard(-1)
	}
}

// handshake feeds the upstream's answer to the handshake; once it is done,
// the client gets its 200 and the relay starts.
func (t *tunnelExchange) handshake() {
	cc, s := t.cc, t.setup
	done, reply, err := cc.ls.handshake(t.up, s.hs, &cc.rec)
	// A write in the handshake may have ended the tunnel (gnet closes a
	// connection whose write fails, and its OnClose runs inside the write).
	switch {
	case t.st != tHandshake:
	case err != nil:
		t.handshakeFailed(upstream.Classify(err))
	case done:
		cc.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), proxystatus.None)
		cc.ls.reportAttempt(&s.ups, t.up.idx, nil)
		cc.rec.status = 200
		cc.rec.headOut = int64(len(reply))
		if _ = cc.end.Write(reply); t.st == tHandshake {
			t.startRelay()
		}
	}
}

// handshakeFailed reports and answers a failed upstream handshake.
func (t *tunnelExchange) handshakeFailed(pe *proxystatus.Error) {
	t.cc.e.cfg.Observer.UpstreamHandshake(time.Since(t.setup.hsStart), pe.Type)
	t.cc.ls.reportAttempt(&t.setup.ups, t.up.idx, pe)
	t.fail(pe)
}

// startRelay turns the exchange into a byte relay. What only the set-up
// needed goes now: an idle tunnel keeps little.
func (t *tunnelExchange) startRelay() {
	cc := t.cc
	if t.setup != nil {
		t.setup.ups.release(cc.ls)
		t.setup = nil
	}
	t.setState(tRelaying)
	t.lastActive = time.Now().UnixNano()
	cc.deadline = t.lastActive + int64(cc.e.cfg.TunnelIdleTimeout)
	t.relay.Start(&cc.end, &t.up.end)
	t.afterRelay()
}

// upgrade makes a tunnel of a plain-HTTP exchange whose upstream u answered
// 101 (the 101 was forwarded).
func (t *tunnelExchange) upgrade(u *upstreamConn) {
	t.up = u
	u.x = t
	t.startRelay()
}

// clientTraffic relays, or leaves early bytes queued until the tunnel opens.
func (t *tunnelExchange) clientTraffic() {
	switch t.st {
	case tRelaying:
		t.relay.OnTraffic(tunnel.Client)
		t.afterRelay()
	case tDialing, tHandshake:
		t.cc.end.Pause() // gnet re-armed it; the bytes wait for the 200
	default:
		_, _ = t.cc.end.Conn().Discard(-1)
	}
}

// clientClosed handles gnet closing the client connection.
func (t *tunnelExchange) clientClosed(err error) {
	cc := t.cc
	switch t.st {
	case tRelaying:
		t.relay.OnClose(tunnel.Client, err)
		t.afterRelay()
		t.maybeDone()
		return
	case tDialing, tHandshake:
		// Its reads were masked, so this is a reset or a timeout, not a
		// FIN: nobody is left to answer.
		cc.rec.detail = "client closed before the upstream answered"
		cc.logExchange()
		t.abandon()
	}
	cc.end.Gone()
	t.maybeDone()
}

// upstreamClosed handles gnet closing the upstream connection.
func (t *tunnelExchange) upstreamClosed(u *upstreamConn, err error) {
	switch t.st {
	case tHandshake:
		u.end.Gone()
		pe := upstream.Classify(err)
		if err == nil || pe.Type == proxystatus.ConnectionTerminated {
			pe = proxystatus.New(proxystatus.ConnectionTerminated, "upstream closed the connection before answering")
		}
		if connectFailed(err) {
			t.cc.rec.headIn = 0 // a dial on the loop whose connect failed: nothing went out
		}
		t.handshakeFailed(pe)
	case tRelaying:
		t.relay.OnClose(tunnel.Upstream, err)
		t.afterRelay()
	default:
		u.end.Gone()
	}
	t.maybeDone()
}

// dialFailed runs on the loop when every upstream of the list failed.
func (t *tunnelExchange) dialFailed(gen uint32, tried int, pe *proxystatus.Error) {
	if t.st != tDialing || gen != t.setup.ups.gen {
		return
	}
	// The access line names the upstream that failed last.
	if ups := &t.setup.ups; tried < ups.n {
		t.cc.rec.upHost = ups.entry(tried).AppendHostPort(t.cc.rec.upHost[:0])
	}
	t.fail(pe)
}

// fail ends the set-up with an error answered to the client.
func (t *tunnelExchange) fail(pe *proxystatus.Error) {
	t.abandon()
	t.cc.fail(pe)
	t.maybeDone()
}

// abandon stops the set-up: a late dial result is dropped, the upstream
// closed, the list released.
func (t *tunnelExchange) abandon() {
	if t.setup != nil {
		t.setup.ups.gen++
		t.setup.ups.release(t.cc.ls)
	}
	if t.up != nil {
		t.up.end.Close()
	}
	if t.st != tFailed {
		t.setState(tFailed)
	}
}

// expire handles a passed deadline: the dial, the handshake, or the idle
// tunnel.
func (t *tunnelExchange) expire(now int64) {
	cc := t.cc
	switch t.st {
	case tDialing:
		t.fail(proxystatus.New(proxystatus.ConnectionTimeout, "upstream did not accept the connection in time"))
	case tHandshake:
		if pe, next := t.up.connectExpired(now, t.setup.hsStart); pe != nil {
			t.fail(pe)
			return
		} else if next != 0 {
			cc.deadline = next
			return
		}
		t.handshakeFailed(proxystatus.New(proxystatus.HTTPResponseTimeout, "upstream did not answer in time"))
	case tRelaying:
		idle := int64(cc.e.cfg.TunnelIdleTimeout)
		if now-t.lastActive >= idle {
			cc.deadline = 0
			cc.rec.detail = "tunnel idle timeout"
			t.relay.Abort()
			t.maybeDone() // a tunnel whose connections gnet closed already ends here
			return
		}
		cc.deadline = t.lastActive + idle
	default:
		cc.deadline = 0
		cc.end.Close()
		if t.up != nil {
			t.up.end.Close()
		}
	}
}

// afterRelay reports relayed bytes and keeps the relay serviced.
func (t *tunnelExchange) afterRelay() {
	up, down := t.relay.Moved(tunnel.Client)-t.reported[0], t.relay.Moved(tunnel.Upstream)-t.reported[1]
	if up != 0 || down != 0 {
		t.reported[0] += up
		t.reported[1] += down
		t.cc.relayed(up, down)
		t.lastActive = time.Now().UnixNano()
	}
	if t.relay.NeedsService() {
		t.cc.ls.watch(t)
	}
}

// service runs the relay's periodic work.
func (t *tunnelExchange) service() bool {
	if t.st != tRelaying {
		return false
	}
	t.relay.Service()
	t.afterRelay()
	t.maybeDone()
	return t.st == tRelaying && t.relay.NeedsService()
}

func (t *tunnelExchange) watched() *bool { return &t.isWatched }

// maybeDone ends the tunnel once both connections are gone.
func (t *tunnelExchange) maybeDone() {
	cc := t.cc
	if t.st == tDone || cc.end.Conn() != nil || (t.up != nil && t.up.end.Conn() != nil) {
		return
	}
	if t.st == tRelaying {
		if !t.relay.Closed() {
			return
		}
		cc.logExchange()
	}
	if t.st == tNew || t.st == tDialing || t.st == tHandshake {
		t.setState(tFailed)
	}
	t.setState(tDone)
	cc.finish()
}

func (t *tunnelExchange) over() bool { return t.st == tDone }

func (t *tunnelExchange) upstream() *upstreamConn { return t.up }

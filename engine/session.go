package engine

import (
	"errors"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/tunnel"
	"github.com/proxyto/proxyto/upstream"
)

// connState is where a client connection is in its life. Every change goes
// through session.setState. Legal transitions are listed on each constant;
// [transient] states end by themselves (an answer or a timeout).
type connState uint8

const (
	// stateReadingHead: waiting for (the rest of) a request head.
	// → stateDialing, stateForwarding (pooled upstream), stateClosing.
	stateReadingHead connState = iota
	// stateDialing [transient]: the dial pool resolves and connects the
	// upstream off the loop; client reads are masked once it sends more.
	// → stateHandshake, stateClosing.
	stateDialing
	// stateHandshake [transient]: CONNECT, SOCKS5 or the request was sent;
	// waiting for the upstream's answer.
	// → stateRelaying, stateForwarding, stateClosing.
	stateHandshake
	// stateRelaying: a tunnel; tunnel.Relay moves bytes both ways.
	// → stateClosed.
	stateRelaying
	// stateForwarding: a plain-HTTP exchange streams its bodies.
	// → stateReadingHead (keep-alive), stateRelaying (101), stateClosing.
	stateForwarding
	// stateClosing [transient]: an answer was sent or a side failed; the
	// connections are closing.
	// → stateClosed.
	stateClosing
	// stateClosed: both connections closed; the session is gone.
	stateClosed
)

// session is the per-client-connection state; it is the gnet context of the
// client connection and of its upstream connection. Only its loop touches it.
type session struct {
	e  *Engine
	ls *loopState

	client gnet.Conn // nil after its OnClose
	up     gnet.Conn // nil when none or after its OnClose
	state  connState
	gen    uint32 // bumped when a dial is abandoned: stale dial results are dropped
	idx    int    // position in ls.sessions

	clientIP   netip.Addr
	clientAddr netip.AddrPort

	// Deadlines (unix ns, 0 = none) are checked by loopState.scan.
	deadline   int64
	headStart  int64 // first byte of the current head; 0 while idle
	lastActive int64 // last byte relayed (tunnels)

	// list is the upstream list of the current exchange: the engine's
	// default list, or one parsed from X-Proxy-To and owned by this session
	// (ownList) until the exchange no longer needs it (releaseList). Bulky
	// per-exchange state lives outside the session, so that an idle tunnel
	// holds only what it needs (the request and response parsers are the
	// loop's; they are used within one callback).
	list     *httpparse.UpstreamList
	ownList  bool
	upIdx    int              // which entry of list is connected
	socks    *upstream.Socks5 // SOCKS5 handshake, while one runs
	fwd      *fwdState        // plain-HTTP exchange state, once one ran
	upPool   *pooledConn      // pool entry of s.up, reused when it goes back
	paused   bool             // client reads masked (dialing, a waiting pipelined request, backpressure)
	relay    tunnel.Relay
	serviced bool // on ls.service

	// Copies of request bytes that must outlive the callback that read them.
	method       []byte
	target       []byte // CONNECT authority or absolute URL
	fwdAuthority []byte // host:port a forwarded request goes to
	e2e          []byte // the client's end-to-end header lines, CRLF-terminated
	upHost       []byte // upstream host:port for logs
	authSeen     []byte // Proxy-Authorization value awaiting Verify

	// Access record of the current exchange.
	kind       Kind
	start      time.Time
	hsStart    time.Time
	status     int
	errType    proxystatus.Type
	detail     string
	headIn     int64 // request head bytes sent upstream
	headOut    int64 // response head bytes sent to the client
	reported   [2]int64
	logPending bool
	tunnelOpen bool
}

// setState is the one place the state changes.
func (s *session) setState(st connState) {
	if st == stateRelaying && !s.tunnelOpen {
		s.tunnelOpen = true
		s.e.cfg.Observer.TunnelOpened()
	}
	s.state = st
}

// OnOpen is gnet's callback for a new connection: an accepted client (no
// context yet) or a dialed upstream (an *upLink).
func (e *Engine) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if l, ok := c.Context().(*upLink); ok {
		return l.s.openUpstream(c, l)
	}
	return e.openClient(c)
}

func (e *Engine) openClient(c gnet.Conn) ([]byte, gnet.Action) {
	ls, err := e.loopOf(c)
	if err != nil {
		// The start-up self-check makes this unreachable in practice.
		return nil, gnet.Close
	}
	ap := addrPortOf(c.RemoteAddr())
	ip := ap.Addr().Unmap()
	if reason, ok := e.limits.admit(ip); !ok {
		// Over a limit (or draining, for a connection accepted just before
		// the listeners were retired): answer and close without a session.
		e.cfg.Observer.LimitRejected(reason)
		_, _ = c.Write(limitResponse(reason))
		_ = unix.Shutdown(c.Fd(), unix.SHUT_WR)
		return nil, gnet.Close
	}
	e.clients.Add(1)
	e.cfg.Observer.ClientOpened()
	s := &session{e: e, ls: ls, client: c, clientIP: ip, clientAddr: ap, idx: -1}
	c.SetContext(s)
	ls.add(s)
	s.deadline = time.Now().Add(e.cfg.ClientHeaderTimeout).UnixNano()
	return nil, gnet.None
}

// OnTraffic is gnet's callback for readable bytes on either connection.
func (e *Engine) OnTraffic(c gnet.Conn) gnet.Action {
	s, ok := c.Context().(*session)
	if !ok {
		// An idle pooled connection must stay silent: anything it sends
		// makes it unusable.
		if pc, ok := c.Context().(*pooledConn); ok && !pc.dead {
			pc.pk.closedByUpstream(pc, time.Now().UnixNano())
			pc.dead = true
			_ = c.Close()
		}
		_, _ = c.Discard(-1)
		return gnet.None
	}
	if c == s.client {
		s.clientTraffic()
	} else if c == s.up {
		s.upstreamTraffic()
	} else {
		_, _ = c.Discard(-1)
	}
	return gnet.None
}

// OnClose is gnet's callback after a connection closed; neither connection
// pointer is used after it.
func (e *Engine) OnClose(c gnet.Conn, err error) gnet.Action {
	s, ok := c.Context().(*session)
	if !ok {
		if pc, ok := c.Context().(*pooledConn); ok {
			if ls, err := e.loopOf(c); err == nil {
				ls.pool.drop(pc)
			}
		}
		return gnet.None
	}
	c.SetContext(nil)
	switch c {
	case s.client:
		s.clientClosed(err)
	case s.up:
		s.upstreamClosed(err)
	}
	return gnet.None
}

func (s *session) clientTraffic() {
	switch s.state {
	case stateReadingHead:
		s.readHead()
	case stateRelaying:
		s.relay.OnTraffic(tunnel.Client)
		s.afterRelay()
	case stateForwarding:
		s.forwardClientTraffic()
	case stateDialing, stateHandshake:
		// Bytes sent before the tunnel opens stay queued in gnet (they are
		// relayed after the 200); reading stops until then, so a fast
		// client cannot push more than one read into memory.
		if !s.paused {
			s.paused = true
			_ = s.ls.poller.Pause(s.client)
		}
	default:
		_, _ = s.client.Discard(-1)
	}
}

func (s *session) upstreamTraffic() {
	switch s.state {
	case stateHandshake:
		s.handshake()
	case stateRelaying:
		s.relay.OnTraffic(tunnel.Upstream)
		s.afterRelay()
	case stateForwarding:
		s.forwardUpstreamTraffic()
	default:
		_, _ = s.up.Discard(-1)
	}
}

// readHead parses the request head buffered on the client connection.
func (s *session) readHead() {
	c := s.client
	buf, _ := c.Peek(-1)
	if len(buf) == 0 {
		return
	}
	if s.headStart == 0 {
		s.headStart = time.Now().UnixNano()
		s.deadline = s.headStart + int64(s.e.cfg.ClientHeaderTimeout)
		s.start = time.Now()
		// A head that fails to parse is still one request for the
		// access log and the metrics.
		s.kind, s.logPending = KindHTTP, true
		s.method, s.target, s.upHost = s.method[:0], s.target[:0], s.upHost[:0]
		s.status, s.headOut, s.headIn, s.errType, s.detail = 0, 0, 0, proxystatus.None, ""
		s.reported = [2]int64{}
	}
	n, err := s.ls.req.Parse(buf)
	if errors.Is(err, httpparse.ErrNeedMore) {
		if len(buf) > s.e.cfg.MaxHeaderBytes {
			s.fail(&proxystatus.Error{Type: proxystatus.HTTPRequestError, Status: 431, Detail: "request header section too large"})
		}
		return
	}
	if err != nil {
		s.fail(proxystatus.New(proxystatus.HTTPRequestError, "malformed request: "+parseDetail(err)))
		return
	}
	if n > s.e.cfg.MaxHeaderBytes {
		s.fail(&proxystatus.Error{Type: proxystatus.HTTPRequestError, Status: 431, Detail: "request header section too large"})
		return
	}
	s.beginExchange(buf, n)
}

// beginExchange validates a parsed head and starts its exchange.
func (s *session) beginExchange(buf []byte, n int) {
	e, r := s.e, &s.ls.req
	s.method = append(s.method[:0], r.Method.Bytes(buf)...)
	s.target = append(s.target[:0], r.Target.Bytes(buf)...)
	if r.Connect {
		s.kind = KindConnect
	} else {
		s.kind = KindHTTP
	}
	if e.draining.Load() {
		e.cfg.Observer.LimitRejected(LimitDraining)
		s.fail(proxystatus.New(proxystatus.ProxyInternalResponse, "proxyto is shutting down"))
		return
	}
	if !e.limits.allowRequest(s.clientIP) {
		e.cfg.Observer.LimitRejected(LimitRate)
		s.fail(&proxystatus.Error{Type: proxystatus.ConnectionLimitReached, Status: 429, Detail: "request rate limit reached"})
		return
	}
	switch {
	case r.XProxyToCount > 1:
		s.fail(proxystatus.New(proxystatus.HTTPRequestError, "X-Proxy-To given more than once"))
		return
	case r.XProxyToCount == 1:
		l := s.ls.getList()
		if err := l.Parse(r.XProxyTo.Bytes(buf)); err != nil {
			s.ls.putList(l)
			s.fail(proxystatus.New(proxystatus.HTTPRequestError, "bad X-Proxy-To: "+parseDetail(err)))
			return
		}
		s.releaseList()
		s.list, s.ownList = l, true
	case e.defaultList != nil:
		s.releaseList()
		s.list = e.defaultList
	default:
		s.fail(proxystatus.New(proxystatus.HTTPRequestError, "missing X-Proxy-To header"))
		return
	}
	s.authSeen = s.authSeen[:0]
	if e.cfg.Auth != nil {
		if !r.HasProxyAuth {
			s.fail(errAuthRequired)
			return
		}
		v := r.ProxyAuthorization.Bytes(buf)
		ok, known := e.cfg.Auth.Cached(v)
		if known && !ok {
			s.fail(errAuthRequired)
			return
		}
		if !known {
			s.authSeen = append(s.authSeen, v...)
		}
	}
	if r.Connect {
		s.beginConnect(buf, n)
		return
	}
	s.beginForward(buf, n)
}

// errAuthRequired answers a client that failed proxyto's own authentication.
var errAuthRequired = &proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Status: 407, Detail: "proxy authentication required"}

// parseDetail turns a parser error into a one-line detail without the
// "proxyto: " prefix and without any request bytes (the sentinels hold none).
func parseDetail(err error) string {
	m := err.Error()
	const p = "proxyto: "
	if len(m) > len(p) && m[:len(p)] == p {
		m = m[len(p):]
	}
	return m
}

// fail answers the client with e, unless response bytes already went out, in
// which case the connection is just closed (SPEC §4). It ends the exchange.
func (s *session) fail(pe *proxystatus.Error) {
	if s.status == 0 && s.client != nil && s.headOut == 0 {
		extra := ""
		switch pe.Code() {
		case 407:
			extra = "Proxy-Authenticate: Basic realm=\"" + s.e.cfg.AuthRealm + "\"\r\n"
		case 429:
			extra = "Retry-After: 1\r\n"
		}
		out := proxystatus.AppendResponse(s.ls.scratch[:0], pe, extra)
		s.ls.scratch = out[:0]
		_, _ = s.client.Write(out)
		s.status = pe.Code()
		s.headOut = int64(len(out))
	}
	s.errType, s.detail = pe.Type, pe.Detail
	if s.errType == proxystatus.None {
		s.errType = proxystatus.ProxyInternalError
	}
	s.gen++
	s.logExchange()
	s.closeUpstream()
	s.releaseList()
	s.lingerClose()
}

// releaseList gives a list parsed from X-Proxy-To back to the loop.
func (s *session) releaseList() {
	if s.ownList {
		s.ls.putList(s.list)
	}
	s.list, s.ownList = nil, false
}

// lingerClose sends FIN to the client after the answer and closes once the
// client closes too (or after a second), reading and dropping what it still
// sends: closing with unread input would reset the connection and could
// destroy the answer before the client read it.
func (s *session) lingerClose() {
	s.setState(stateClosing)
	c := s.client
	if c == nil {
		return
	}
	s.deadline = time.Now().Add(time.Second).UnixNano()
	_, _ = c.Discard(-1)
	if c.OutboundBuffered() == 0 && unix.Shutdown(c.Fd(), unix.SHUT_WR) == nil {
		_ = s.ls.poller.Resume(c)
		return
	}
	s.closeClient()
}

// closeClient asks gnet to close the client connection.
func (s *session) closeClient() {
	if s.client != nil {
		_ = s.client.Close()
	}
}

// closeUpstream asks gnet to close the upstream connection, if any.
func (s *session) closeUpstream() {
	if s.up != nil {
		_ = s.up.Close()
	}
}

// expire handles a passed deadline.
func (s *session) expire(now int64) {
	switch s.state {
	case stateReadingHead:
		s.deadline = 0
		if s.logPending {
			s.errType, s.detail = proxystatus.HTTPRequestError, "client did not send a complete request head in time"
			s.logExchange()
		}
		s.closeClient()
	case stateDialing:
		s.fail(proxystatus.New(proxystatus.ConnectionTimeout, "upstream did not accept the connection in time"))
	case stateHandshake:
		s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), proxystatus.HTTPResponseTimeout)
		s.fail(proxystatus.New(proxystatus.HTTPResponseTimeout, "upstream did not answer in time"))
	case stateRelaying:
		idle := int64(s.e.cfg.TunnelIdleTimeout)
		if now-s.lastActive >= idle {
			s.deadline = 0
			s.detail = "tunnel idle timeout"
			s.relay.Abort()
			s.maybeFinish() // a tunnel whose connections gnet closed already ends here
			return
		}
		s.deadline = s.lastActive + idle
	case stateForwarding:
		s.forwardExpire(now)
	default:
		s.deadline = 0
		s.closeClient()
		s.closeUpstream()
	}
}

func (s *session) clientClosed(err error) {
	s.client = nil
	switch s.state {
	case stateRelaying:
		s.relay.OnClose(tunnel.Client, err)
		s.afterRelay()
	case stateForwarding:
		s.forwardClientClosed()
	case stateDialing, stateHandshake:
		s.gen++
		s.detail = "client closed before the upstream answered"
		s.logExchange()
		s.closeUpstream()
	case stateReadingHead:
		if s.logPending {
			s.detail = "client closed in the middle of a request head"
			s.logExchange()
		}
	}
	if s.state != stateRelaying {
		s.setState(stateClosing)
	}
	s.e.cfg.Observer.ClientClosed()
	s.e.limits.release(s.clientIP)
	s.maybeFinish()
}

func (s *session) upstreamClosed(err error) {
	s.up = nil
	switch s.state {
	case stateHandshake:
		pe := upstream.Classify(err)
		if err == nil || errors.Is(err, errEOFLike) {
			pe = proxystatus.New(proxystatus.ConnectionTerminated, "upstream closed the connection before answering")
		}
		s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), pe.Type)
		s.fail(pe)
	case stateRelaying:
		s.relay.OnClose(tunnel.Upstream, err)
		s.afterRelay()
	case stateForwarding:
		s.forwardUpstreamClosed(err)
	}
	s.maybeFinish()
}

// errEOFLike matches the errors gnet reports for a peer that closed.
var errEOFLike = errors.New("eof")

// afterRelay reports relayed bytes and keeps the relay serviced.
func (s *session) afterRelay() {
	up, down := s.relay.Moved[tunnel.Client]-s.reported[0], s.relay.Moved[tunnel.Upstream]-s.reported[1]
	if up != 0 || down != 0 {
		s.reported[0] += up
		s.reported[1] += down
		s.e.cfg.Observer.Relayed(int(up), int(down))
		s.lastActive = time.Now().UnixNano()
	}
	if s.relay.NeedsService() {
		s.ls.watch(s)
	}
}

func (s *session) service() {
	if s.state == stateRelaying {
		s.relay.Service()
		s.afterRelay()
		s.maybeFinish()
		return
	}
	s.forwardService()
}

func (s *session) needsService() bool {
	if s.state == stateRelaying {
		return s.relay.NeedsService()
	}
	return s.forwardNeedsService()
}

// maybeFinish ends the session once both connections are gone.
func (s *session) maybeFinish() {
	if s.client != nil || s.up != nil || s.state == stateClosed {
		return
	}
	if s.state == stateRelaying {
		if !s.relay.Closed() {
			return
		}
		s.logExchange()
	}
	if s.tunnelOpen {
		s.tunnelOpen = false
		s.e.cfg.Observer.TunnelClosed()
	}
	s.releaseList()
	s.fwd.dropReplay()
	s.setState(stateClosed)
	s.deadline = 0
	s.ls.remove(s)
	s.e.clients.Add(-1)
}

// logExchange reports the current exchange once.
func (s *session) logExchange() {
	if !s.logPending {
		return
	}
	s.logPending = false
	// The record lives on the loop: Done is synchronous and must not keep
	// it, so one per loop serves every exchange without an allocation.
	r := &s.ls.rec
	*r = Record{
		Kind:     s.kind,
		Client:   s.clientAddr,
		Method:   s.method,
		Target:   s.target,
		Upstream: s.upHost,
		Status:   s.status,
		BytesIn:  s.headIn + s.reported[0],
		BytesOut: s.headOut + s.reported[1],
		Start:    s.start,
		Duration: time.Since(s.start),
		Error:    s.errType,
		Detail:   s.detail,
	}
	s.e.cfg.Observer.Done(r)
}

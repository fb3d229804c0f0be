package engine

import (
	"errors"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/tunnel"
)

// A client connection reads request heads, checks them (X-Proxy-To, client
// authentication, limits), and hands each request to an exchange: a tunnel
// (tunnel.go) for CONNECT, a plain-HTTP exchange (forward.go) otherwise.
// After a plain-HTTP exchange it reads the next head (keep-alive); after an
// error it answers, lingers and closes. Every answer proxyto makes itself
// leaves through fail.

// clientConn is the gnet context of an accepted client connection. Only its
// loop touches it.
type clientConn struct {
	e   *Engine
	ls  *loopState
	end tunnel.End
	st  clientState
	idx int // position in ls.clients

	ip   netip.Addr
	addr netip.AddrPort

	// deadline (unix ns, 0 = none) is checked by loopState.scan; what it
	// bounds depends on the state (and on the exchange's).
	deadline  int64
	headStart int64 // first byte of the current head (awaiting a PROXY header: non-zero once bytes came); 0 while idle

	// held is the part of an unfinished head (request or PROXY header)
	// already taken out of gnet, nil when none; heldN is how many bytes
	// of the head being parsed held had before this round's (see gather).
	held  *bytebufferpool.ByteBuffer
	heldN int

	x         exchange      // the running exchange, or nil
	http      *httpExchange // kept across keep-alive requests
	rec       access        // the current exchange's access record
	isWatched bool          // on ls.service (flushing)
	counted   bool          // counted in Engine.clients until finish
	admitted  bool          // counted by the limits for ip (released at close)
	fds       int8          // descriptors taken from the budget until finish
}

// exchange is one request's work once its head was read: a tunnel or a
// plain-HTTP exchange. The client connection passes it the events of both
// connections; it tells the client connection when it is over
// (exchangeDone, or finished for a tunnel that outlived the client).
type exchange interface {
	clientTraffic()
	clientClosed(err error)
	upstreamTraffic(u *upstreamConn)
	upstreamClosed(u *upstreamConn, err error)
	upstreamOpened(u *upstreamConn) bool // a dial's connection; false: not wanted
	dialFailed(gen uint32, tried int, pe *proxystatus.Error)
	expire(now int64)
	// over reports that nothing of the exchange is left running.
	over() bool
	// upstream is the exchange's upstream connection, or nil.
	upstream() *upstreamConn
}

// access is the access record of the current exchange, reported once.
type access struct {
	kind    Kind
	start   time.Time
	method  []byte
	target  []byte // CONNECT authority or absolute URL
	upHost  []byte // upstream host:port, never its credentials
	status  int
	errType proxystatus.Type
	detail  string
	headIn  int64    // request head bytes sent upstream
	headOut int64    // response head bytes sent to the client
	moved   [2]int64 // body or tunnel bytes: client→upstream, upstream→client
	route   int      // Record.Route
	user    int      // Record.User
	pending bool
}

// openClient runs in OnOpen for an accepted connection: from the plain
// listener, or from the TLS listener (fromTLS), whose handshake and any
// PROXY header are done and whose client address is ap. A connection from
// a peer that must send a PROXY header waits for it before the limits see
// it: they count the client it names.
func (e *Engine) openClient(c gnet.Conn, ap netip.AddrPort, fromTLS bool) ([]byte, gnet.Action) {
	ls, err := e.loopOf(c)
	if err != nil {
		// The start-up self-check makes this unreachable in practice.
		return nil, gnet.Close
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	awaitProxy := !fromTLS && e.cfg.ProxyPeers.Contains(ap.Addr())
	fds := int8(fdsPlain)
	if fromTLS {
		fds = fdsTLS
	}
	// Every connection takes its descriptors from the budget, one from a
	// PROXY peer too before its header names the client.
	reason, ok := LimitConns, e.fds.take(int(fds))
	if ok && !awaitProxy {
		if reason, ok = e.limits.admit(ap.Addr()); !ok {
			e.fds.put(int(fds))
		}
	}
	if !ok {
		// Over a limit: answer and close without a session.
		e.cfg.Observer.LimitRejected(reason)
		_, _ = c.Write(limitResponse(reason))
		_ = unix.Shutdown(c.Fd(), unix.SHUT_WR)
		return nil, gnet.Close
	}
	e.clients.Add(1)
	e.cfg.Observer.ClientOpened()
	cc := &clientConn{e: e, ls: ls, ip: ap.Addr(), addr: ap, idx: -1, counted: true, admitted: !awaitProxy, fds: fds}
	if awaitProxy {
		cc.st = cAwaitingProxy
	}
	cc.end.Attach(ls.relay, c)
	c.SetContext(cc)
	ls.add(cc)
	cc.deadline = time.Now().Add(e.cfg.ClientHeaderTimeout).UnixNano()
	return nil, gnet.None
}

// readProxy reads the PROXY protocol header a trusted peer sends first. Its
// client address replaces the peer's for everything (v2 LOCAL and v1
// UNKNOWN keep the peer's); then the limits admit that client, and the
// connection reads its first request head. Anything but a valid header
// closes the connection without an answer: the peer is a load balancer,
// and the client behind it would not read one.
func (cc *clientConn) readProxy() {
	c := cc.end.Conn()
	buf := cc.gather()
	if len(buf) == 0 {
		return
	}
	cc.headStart = 1 // bytes arrived: a close now is an incomplete header
	h := &cc.ls.proxy
	n, err := h.Parse(buf)
	switch {
	case errors.Is(err, httpparse.ErrNeedMore):
		// The parser refuses a header longer than MaxProxyHeaderLen before
		// that many bytes are buffered.
		cc.hold(buf)
		return
	case err != nil:
		cc.refuseProxy(proxyFailureOf(err))
		return
	}
	cc.consumeHead(n)
	cc.addr = h.Client(cc.addr)
	cc.ip = cc.addr.Addr()
	e := cc.e
	if reason, ok := e.limits.admit(cc.ip); !ok {
		e.cfg.Observer.LimitRejected(reason)
		_ = cc.end.Write(limitResponse(reason))
		cc.linger()
		return
	}
	cc.admitted = true
	cc.setState(cReadingHead)
	cc.headStart = 0
	cc.deadline = time.Now().Add(e.cfg.ClientHeaderTimeout).UnixNano()
	if c.InboundBuffered() > 0 {
		cc.readHead()
	}
}

// refuseProxy closes a connection whose PROXY header failed, and counts it.
func (cc *clientConn) refuseProxy(f ProxyFailure) {
	cc.e.cfg.Observer.ProxyHeaderFailed(f)
	cc.deadline, cc.headStart = 0, 0 // counted here, not again at the close
	cc.end.Close()
}

// proxyFailureOf classifies a PROXY header parse error.
func proxyFailureOf(err error) ProxyFailure {
	switch {
	case errors.Is(err, httpparse.ErrProxyHeaderMissing):
		return ProxyMissing
	case errors.Is(err, httpparse.ErrProxyHeaderTooLong):
		return ProxyTooLong
	}
	return ProxyMalformed
}

// setState is the one place a client connection's state changes.
func (cc *clientConn) setState(to clientState) {
	if !legal(clientNext[:], cc.st, to) {
		cc.e.illegalTransition("client connection", cc.st, to)
		cc.abort()
	}
	cc.st = to
}

// abort closes both connections at once (a bug was found, or a drain ran out).
func (cc *clientConn) abort() {
	cc.end.Close()
	if cc.x != nil {
		if u := cc.x.upstream(); u != nil {
			u.end.Close()
		}
	}
}

// traffic handles readable bytes on the client connection.
func (cc *clientConn) traffic() {
	switch cc.st {
	case cReadingHead:
		cc.readHead()
	case cAwaitingProxy:
		cc.readProxy()
	case cExchange:
		cc.x.clientTraffic()
	default:
		_, _ = cc.end.Conn().Discard(-1)
	}
}

// closed runs in OnClose for the client connection.
func (cc *clientConn) closed(err error) {
	wasReading := cc.st == cReadingHead
	if cc.x != nil && !cc.x.over() {
		cc.x.clientClosed(err) // calls end.Gone, or hands the close to its relay
	} else {
		cc.end.Gone()
	}
	if wasReading && cc.rec.pending {
		cc.rec.detail = "client closed in the middle of a request head"
		cc.logExchange()
	}
	if cc.st == cAwaitingProxy && cc.headStart != 0 {
		cc.e.cfg.Observer.ProxyHeaderFailed(ProxyIncomplete)
	}
	cc.setState(cClosed)
	cc.e.cfg.Observer.ClientClosed()
	if cc.admitted {
		cc.admitted = false
		cc.e.limits.release(cc.ip)
	}
	cc.finish()
}

// finish counts the connection out once gnet closed it and no exchange of
// it runs any more.
func (cc *clientConn) finish() {
	if cc.st != cClosed || !cc.counted || (cc.x != nil && !cc.x.over()) {
		return
	}
	cc.counted = false
	cc.deadline = 0
	cc.releaseHeld()
	cc.ls.remove(cc)
	cc.e.clients.Add(-1)
	cc.e.fds.put(int(cc.fds))
}

// expire handles a passed deadline.
func (cc *clientConn) expire(now int64) {
	switch cc.st {
	case cReadingHead:
		cc.deadline = 0
		if cc.rec.pending {
			cc.rec.errType, cc.rec.detail = proxystatus.HTTPRequestError, "client did not send a complete request head in time"
			cc.logExchange()
		}
		cc.end.Close()
	case cAwaitingProxy:
		cc.refuseProxy(ProxyTimeout)
	case cExchange, cClosed:
		if cc.x != nil {
			cc.x.expire(now)
		} else {
			cc.deadline = 0
		}
	default:
		cc.deadline = 0
		cc.end.Close()
	}
}

// readHead parses the request head buffered on the client connection.
func (cc *clientConn) readHead() {
	buf := cc.gather()
	if len(buf) == 0 {
		return
	}
	if cc.headStart == 0 {
		now := time.Now()
		cc.headStart = now.UnixNano()
		cc.deadline = cc.headStart + int64(cc.e.cfg.ClientHeaderTimeout)
		// A head that fails to parse is still one request for the
		// access log and the metrics.
		r := &cc.rec
		*r = access{kind: KindHTTP, start: now, pending: true, route: -1, user: -1,
			method: r.method[:0], target: r.target[:0], upHost: r.upHost[:0]}
	}
	n, err := cc.ls.req.Parse(buf)
	if errors.Is(err, httpparse.ErrNeedMore) {
		if len(buf) > cc.e.cfg.MaxHeaderBytes {
			cc.fail(errHeadTooLarge)
			return
		}
		cc.hold(buf)
		return
	}
	if err != nil {
		if httpparse.HasProxySignature(buf) {
			cc.fail(errUntrustedProxy)
			return
		}
		cc.fail(proxystatus.New(proxystatus.HTTPRequestError, "malformed request: "+parseDetail(err)))
		return
	}
	if n > cc.e.cfg.MaxHeaderBytes {
		cc.fail(errHeadTooLarge)
		return
	}
	cc.begin(buf, n)
}

// gather returns the bytes of the head being read: what gnet buffered or
// just read, behind the part of the head held from earlier rounds, if any.
// The slice lives until the callback returns or consumeHead runs.
func (cc *clientConn) gather() []byte {
	buf, _ := cc.end.Conn().Peek(-1)
	if cc.held == nil {
		cc.heldN = 0
		return buf
	}
	cc.heldN = cc.held.Len()
	if len(buf) == 0 {
		return nil // the held part was parsed already and found unfinished
	}
	cc.held.B = append(cc.held.B[:cc.heldN], buf...)
	return cc.held.B
}

// hold takes an unfinished head out of gnet into a small buffer of the
// connection's own. Bytes a callback leaves unread go to gnet's inbound ring
// buffer, whose size its pool calibrates to what relays return to it: once
// relays under backpressure filled them, 256 KiB a connection. Slow clients
// dripping a head (slowloris) would each hold that much.
func (cc *clientConn) hold(buf []byte) {
	if cc.held == nil {
		cc.held = heldHeads.Get()
		cc.held.B = append(cc.held.B[:0], buf...)
	}
	_, _ = cc.end.Conn().Discard(len(buf) - cc.heldN)
}

// consumeHead consumes the first n bytes of the head gather returned:
// what of them gnet still buffers, and the held part.
func (cc *clientConn) consumeHead(n int) {
	if c := cc.end.Conn(); c != nil {
		_, _ = c.Discard(n - cc.heldN)
	}
	cc.releaseHeld()
}

// releaseHeld returns the held part of a head, if any.
func (cc *clientConn) releaseHeld() {
	if cc.held != nil {
		heldHeads.Put(cc.held)
		cc.held, cc.heldN = nil, 0
	}
}

// heldHeads pools the buffers of unfinished heads; they are small (a head
// a slow client sends in parts), so the pool's calibration keeps them so.
var heldHeads bytebufferpool.Pool

// errHeadTooLarge answers a request head over MaxHeaderBytes.
var errHeadTooLarge = &proxystatus.Error{Type: proxystatus.HTTPRequestError, Status: 431, Detail: "request header section too large"}

// errUntrustedProxy answers a PROXY protocol header from a peer not in
// ProxyPeers: a load balancer configured to send one to a proxyto that was
// not told to expect it, or a client claiming another address.
var errUntrustedProxy = proxystatus.New(proxystatus.HTTPRequestError, "PROXY protocol header from a peer not trusted to send one")

// errAuthRequired answers a client that failed proxyto's own authentication.
var errAuthRequired = &proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Status: 407, Detail: "proxy authentication required"}

// begin checks a parsed head (draining, rate, then X-Proxy-To, client
// authentication and route in select.go) and starts its exchange.
func (cc *clientConn) begin(buf []byte, n int) {
	e, r := cc.e, &cc.ls.req
	cc.rec.method = append(cc.rec.method[:0], r.Method.Bytes(buf)...)
	cc.rec.target = append(cc.rec.target[:0], r.Target.Bytes(buf)...)
	if r.Connect {
		cc.rec.kind = KindConnect
	}
	if e.draining.Load() {
		e.cfg.Observer.LimitRejected(LimitDraining)
		cc.fail(proxystatus.New(proxystatus.ProxyInternalResponse, "proxyto is shutting down"))
		return
	}
	if !e.limits.allowRequest(cc.ip) {
		e.cfg.Observer.LimitRejected(LimitRate)
		cc.fail(&proxystatus.Error{Type: proxystatus.ConnectionLimitReached, Status: 429, Detail: "request rate limit reached"})
		return
	}
	var ups upstreams
	if pe := cc.choose(buf, &ups); pe != nil {
		ups.release(cc.ls)
		cc.fail(pe)
		return
	}
	cc.setState(cExchange)
	if r.Connect {
		t := &tunnelExchange{cc: cc}
		cc.x = t
		t.start(buf, n, ups)
		return
	}
	if cc.http == nil {
		cc.http = &httpExchange{cc: cc}
	}
	cc.x = cc.http
	cc.http.start(buf, n, ups)
}

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

// fail answers the client with pe, unless response bytes already went out,
// in which case the connection is just closed (a client cannot tell a
// half-sent response from a complete one otherwise). It ends the exchange's
// client side: the connection lingers and closes. The caller has closed or
// released the upstream side.
func (cc *clientConn) fail(pe *proxystatus.Error) {
	r := &cc.rec
	if r.status == 0 && r.headOut == 0 && cc.end.Conn() != nil {
		extra := ""
		switch pe.Code() {
		case 407:
			extra = "Proxy-Authenticate: Basic realm=\"" + cc.e.cfg.AuthRealm + "\"\r\n"
		case 429:
			extra = "Retry-After: 1\r\n"
		}
		out := proxystatus.AppendResponse(cc.ls.scratch[:0], pe, extra)
		cc.ls.scratch = out[:0]
		_ = cc.end.Write(out)
		r.status = pe.Code()
		r.headOut = int64(len(out))
	}
	r.errType, r.detail = pe.Type, pe.Detail
	if pe == errAuthRequired {
		r.user = -1 // only an admitted user is counted as one
	}
	if r.errType == proxystatus.None {
		r.errType = proxystatus.ProxyInternalError
	}
	cc.logExchange()
	if cc.st == cClosed {
		return
	}
	cc.linger()
}

// linger sends FIN to the client after the answer and closes once the
// client closes too (or after a second), reading and dropping what it still
// sends: closing with unread input would reset the connection and could
// destroy the answer before the client read it.
func (cc *clientConn) linger() {
	cc.setState(cLinger)
	c := cc.end.Conn()
	if c == nil {
		return
	}
	cc.deadline = time.Now().Add(time.Second).UnixNano()
	_, _ = c.Discard(-1)
	cc.releaseHeld()
	if c.OutboundBuffered() == 0 && unix.Shutdown(c.Fd(), unix.SHUT_WR) == nil {
		cc.end.Resume()
		return
	}
	cc.end.Close()
}

// closeNow closes the connection at once: a failure after response bytes
// reached the client (it could not tell a cut response from a whole one
// otherwise).
func (cc *clientConn) closeNow() {
	if cc.st == cClosed {
		return
	}
	cc.setState(cLinger)
	cc.deadline = time.Now().Add(time.Second).UnixNano()
	cc.end.Close()
}

// exchangeDone runs when a plain-HTTP exchange finished: the connection reads
// its next request, or closes once its answer is sent (closeAfter).
func (cc *clientConn) exchangeDone(closeAfter bool) {
	cc.logExchange()
	if cc.st == cClosed {
		cc.finish()
		return
	}
	if closeAfter {
		cc.setState(cFlushing)
		cc.deadline = time.Now().Add(cc.e.cfg.TunnelIdleTimeout).UnixNano()
		cc.service()
		return
	}
	cc.setState(cReadingHead)
	cc.headStart = 0
	cc.deadline = time.Now().Add(cc.e.cfg.IdleTimeout).UnixNano()
	cc.end.Resume()
	if c := cc.end.Conn(); c != nil && c.InboundBuffered() > 0 {
		cc.readHead() // a pipelined request
	}
}

// service finishes a flush: the connection lingers once gnet sent the
// answer (gnet's own close would drop what the socket did not take at once).
func (cc *clientConn) service() bool {
	if cc.st != cFlushing {
		return false
	}
	if c := cc.end.Conn(); c != nil && c.OutboundBuffered() > 0 {
		cc.ls.watch(cc)
		return true
	}
	cc.linger()
	return false
}

func (cc *clientConn) watched() *bool { return &cc.isWatched }

// logExchange reports the current exchange once.
func (cc *clientConn) logExchange() {
	r := &cc.rec
	if !r.pending {
		return
	}
	r.pending = false
	// The record lives on the loop: Done is synchronous and must not keep
	// it, so one per loop serves every exchange without an allocation.
	out := &cc.ls.rec
	*out = Record{
		Kind:     r.kind,
		Client:   cc.addr,
		Method:   r.method,
		Target:   r.target,
		Upstream: r.upHost,
		Status:   r.status,
		BytesIn:  r.headIn + r.moved[0],
		BytesOut: r.headOut + r.moved[1],
		Start:    r.start,
		Duration: time.Since(r.start),
		Error:    r.errType,
		Detail:   r.detail,
		Route:    r.route,
		User:     r.user,
	}
	cc.e.cfg.Observer.Done(out)
}

// relayed reports body or tunnel bytes as they move.
func (cc *clientConn) relayed(up, down int64) {
	if up == 0 && down == 0 {
		return
	}
	cc.rec.moved[0] += up
	cc.rec.moved[1] += down
	cc.e.cfg.Observer.Relayed(cc.rec.route, cc.rec.user, int(up), int(down))
}

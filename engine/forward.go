package engine

import (
	"errors"
	"strconv"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/proxyto/proxyto/compression"
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/tunnel"
	"github.com/proxyto/proxyto/upstream"
)

// A plain-HTTP exchange forwards one request: a pooled upstream connection
// or a dial (SOCKS5 handshake first where needed), the head rewritten for
// the upstream (upstream.Forward), the request body streamed within its
// framing (one tunnel.Pipe), the response head forwarded with only the
// hop-by-hop fields dropped, and its body streamed back within its framing
// (another Pipe). Then the upstream connection goes back to the pool when
// reusable, and the client connection reads its next request. One request
// at a time per client connection: pipelined requests wait, paused, in the
// client's input.

// httpExchange is the plain-HTTP exchange of a client connection, reused
// across its keep-alive requests so that the steady state allocates nothing.
type httpExchange struct {
	cc  *clientConn
	up  *upstreamConn
	st  httpState
	ups upstreams

	// The head as it goes upstream; its slices point into the buffers
	// below, which live as long as the exchange.
	fwd       upstream.Forward
	url       []byte
	path      []byte
	authority []byte // host:port the request goes to
	e2e       []byte
	socks     upstream.Socks5
	hsStart   time.Time

	isHead   bool
	gzipOK   bool // the client's Accept-Encoding allows gzip (with Config.Compress)
	upgrade  bool
	closeCli bool // close the client connection after this exchange
	hasBody  bool // the request has a body (reqFraming)
	reusable bool // the upstream connection may go back to the pool
	pooled   bool // up came from the pool
	retried  bool

	reqFraming tunnel.Framing
	reqStarted bool // reqPipe runs (the head went out)
	reqPipe    tunnel.Pipe
	respPipe   tunnel.Pipe
	respUntil  bool // the response body runs until the upstream closes

	// replay holds the request body bytes sent on a reused connection, so
	// that a failure before any response byte can be retried on a fresh
	// one whatever the method.
	replay *bytebufferpool.ByteBuffer

	lastActive int64
	reported   [2]int64 // pipe counts already reported
	isWatched  bool
}

// replayMax bounds the request body kept for a retry on a fresh connection:
// small bodies (forms, JSON, API calls) are the common case, and the bound
// keeps a connection's memory small. Larger bodies keep the stricter rule: a
// retry only when nothing of the body had been sent.
const replayMax = 64 << 10

// replayBufs recycles replay buffers between exchanges.
var replayBufs bytebufferpool.Pool

// setState is the one place an exchange's state changes.
func (x *httpExchange) setState(to httpState) {
	if !legal(httpNext[:], x.st, to) {
		x.cc.e.illegalTransition("http exchange", x.st, to)
		x.cc.abort()
	}
	x.st = to
}

// start begins forwarding the request whose head is buf[:n].
func (x *httpExchange) start(buf []byte, n int, ups upstreams) {
	cc, r := x.cc, &x.cc.ls.req
	x.ups = ups
	x.isHead, x.closeCli, x.upgrade = r.Head, r.WantsClose(), false
	x.gzipOK = cc.e.gz != nil && compression.AcceptsGzip(r, buf)
	x.reusable, x.pooled, x.retried, x.reqStarted, x.respUntil = false, false, false, false, false
	x.reported = [2]int64{}
	first := x.ups.entry(0)
	x.url, x.path = x.url[:0], x.path[:0]
	switch r.Form {
	case httpparse.FormAbsolute:
		if !r.TargetSchemeIs(buf, "http") && (first.Scheme.IsSOCKS() || !r.TargetSchemeIs(buf, "https")) {
			x.fail(proxystatus.New(proxystatus.HTTPRequestError, "only http:// targets can be forwarded; use CONNECT for TLS"))
			return
		}
		x.authority = append(x.authority[:0], r.TargetAuthority.Bytes(buf)...)
		x.url = append(x.url, r.Target.Bytes(buf)...)
		p := r.TargetPath.Bytes(buf)
		if len(p) == 0 || p[0] == '?' {
			x.path = append(x.path, '/')
		}
		x.path = append(x.path, p...)
	case httpparse.FormOrigin:
		host := r.Host.Bytes(buf)
		if !r.HasHost || len(host) == 0 {
			x.fail(proxystatus.New(proxystatus.HTTPRequestError, "origin-form request without Host"))
			return
		}
		if _, _, _, ok := httpparse.SplitHostPort(host, 80); !ok {
			x.fail(proxystatus.New(proxystatus.HTTPRequestError, "invalid Host header"))
			return
		}
		x.authority = append(x.authority[:0], host...)
		x.url = append(append(append(x.url, "http://"...), host...), r.Target.Bytes(buf)...)
		x.path = append(x.path, r.Target.Bytes(buf)...)
		cc.rec.target = append(cc.rec.target[:0], x.url...)
	default:
		x.fail(proxystatus.New(proxystatus.HTTPRequestError, "request target must be an absolute URL or a path with Host"))
		return
	}
	if r.Upgrade && r.UpgradeValue.Len() > 0 {
		x.upgrade = true
		cc.rec.kind = KindUpgrade
	}
	switch {
	case r.Chunked:
		x.reqFraming, x.hasBody = tunnel.Chunked(), true
	case r.ContentLength > 0:
		x.reqFraming, x.hasBody = tunnel.Length(r.ContentLength), true
	default:
		x.reqFraming, x.hasBody = tunnel.Empty(), false
	}
	x.e2e = r.AppendEndToEnd(x.e2e[:0], buf, x.upgrade, false)
	x.fwd = upstream.Forward{Method: cc.rec.method, URL: x.url, Path: x.path, Minor: r.Minor,
		AddHost: !r.HasHost, Authority: x.authority, E2E: x.e2e}
	cc.consumeHead(n)

	// A client whose credentials still await Verify (bcrypt, off the loop)
	// goes through the dial, which runs it: a pooled connection must not
	// let it skip that. Neither does a body that may outgrow the replay
	// buffer (chunked, or longer than replayMax): if a reused connection
	// turned out stale, it could not be sent again, so it takes a fresh one.
	replayable := !x.hasBody || (!r.Chunked && r.ContentLength <= replayMax)
	if len(x.ups.authSeen) == 0 && replayable {
		if u := cc.ls.pool.get(first); u != nil {
			cc.e.cfg.Observer.PoolUsed(true)
			x.pooled = true
			x.attach(u, 0)
			x.sendHead()
			return
		}
	}
	cc.e.cfg.Observer.PoolUsed(false)
	x.dial()
}

// dial asks the dial pool for a connection. The body and any pipelined
// request wait in gnet's buffer meanwhile (clientTraffic pauses the client
// if it sends more).
func (x *httpExchange) dial() {
	x.setState(hDialing)
	x.cc.deadline = x.cc.ls.dial(x, &x.ups, x.authority)
}

// attach makes u, connected to entry idx, the exchange's upstream.
func (x *httpExchange) attach(u *upstreamConn, idx int) {
	x.up, u.x, u.idx = u, x, idx
	entry := x.ups.entry(idx)
	x.fwd.Upstream = entry
	x.cc.rec.upHost = entry.AppendHostPort(x.cc.rec.upHost[:0])
}

// upstreamOpened takes a dialed connection: SOCKS5 first where needed, then
// the head.
func (x *httpExchange) upstreamOpened(u *upstreamConn) bool {
	cc := x.cc
	if x.st != hDialing || u.gen != x.ups.gen || cc.end.Conn() == nil {
		return false
	}
	x.attach(u, u.idx)
	entry := x.fwd.Upstream
	if !entry.Scheme.IsSOCKS() {
		x.sendHead()
		return true
	}
	host, port, _, _ := httpparse.SplitHostPort(x.authority, 80)
	x.socks = upstream.Socks5{User: entry.User, Pass: entry.Pass, HasAuth: entry.HasAuth, Host: host, Port: port}
	if entry.Scheme == httpparse.SchemeSOCKS5 && len(u.addr) > 0 {
		x.socks.Addr = addrFromSlice(u.addr)
	}
	x.setState(hHandshake)
	x.hsStart = time.Now()
	cc.deadline = x.up.handshakeDeadline(x.hsStart)
	out, _, err := x.socks.Start(cc.ls.scratch[:0])
	cc.ls.scratch = out[:0]
	if err != nil {
		x.fail(upstream.Classify(err))
		return true
	}
	cc.rec.headIn += int64(len(out))
	_ = u.end.Write(out)
	return true
}

// socksHandshake advances the SOCKS5 exchange before the head.
func (x *httpExchange) socksHandshake() {
	cc := x.cc
	done, _, err := cc.ls.handshake(x.up, &x.socks, &cc.rec)
	switch {
	case err != nil:
		pe := upstream.Classify(err)
		cc.e.cfg.Observer.UpstreamHandshake(time.Since(x.hsStart), pe.Type)
		cc.ls.reportAttempt(&x.ups, x.up.idx, pe)
		x.fail(pe)
	case done && x.st == hHandshake:
		cc.e.cfg.Observer.UpstreamHandshake(time.Since(x.hsStart), proxystatus.None)
		cc.ls.reportAttempt(&x.ups, x.up.idx, nil)
		x.sendHead()
	}
}

// sendHead sends the request head (and, on a retry, the body bytes the
// failed connection took), then streams the rest of the body.
//
// A write that fails makes gnet close the connection at once, and its
// OnClose (upstreamClosed: a retry, or a failure) runs inside the write; so
// after each write the exchange checks that u is still its upstream.
func (x *httpExchange) sendHead() {
	cc, u := x.cc, x.up
	out, _, _ := x.fwd.Start(cc.ls.scratch[:0])
	cc.ls.scratch = out[:0]
	cc.rec.headIn += int64(len(out))
	x.setState(hSending)
	x.hsStart = time.Now()
	cc.deadline = x.up.handshakeDeadline(x.hsStart)
	// gnet copies what it cannot send at once, so scratch may be reused.
	_ = u.end.Write(out)
	if x.replay != nil && x.retried && x.up == u {
		_ = u.end.Write(x.replay.B)
		x.dropReplay()
	}
	if !x.hasBody || x.up != u {
		return
	}
	started := x.reqStarted
	x.reqStarted = true
	var err error
	switch {
	case started:
		err = x.reqPipe.Retarget(&u.end)
	case x.pooled:
		x.replay = replayBufs.Get()
		err = x.reqPipe.StartKeeping(&cc.end, &u.end, x.reqFraming, &x.replay.B, replayMax)
	default:
		err = x.reqPipe.Start(&cc.end, &u.end, x.reqFraming)
	}
	if x.up == u {
		x.afterRequestBytes(err)
	}
}

// clientTraffic streams request body bytes within their framing. The next
// pipelined request (or the body, before the upstream is connected) waits in
// gnet's buffer.
func (x *httpExchange) clientTraffic() {
	if !x.reqStarted || x.reqPipe.Ended() || x.up == nil || (x.st != hSending && x.st != hStreaming) {
		x.cc.end.Pause()
		return
	}
	x.afterRequestBytes(x.reqPipe.OnTraffic())
}

// afterRequestBytes reports request body bytes moved and what followed.
func (x *httpExchange) afterRequestBytes(err error) {
	if err != nil && !errors.Is(err, tunnel.ErrDestination) {
		x.fail(proxystatus.New(proxystatus.HTTPRequestError, "malformed chunked request body: "+parseDetail(err)))
		return
	}
	if n := x.reqPipe.Moved - x.reported[0]; n > 0 {
		x.reported[0] += n
		x.cc.relayed(n, 0)
		if x.st == hSending {
			// The wait for the answer counts from the end of the request:
			// a slow upload is not an upstream that hangs.
			x.cc.deadline = time.Now().Add(x.cc.e.cfg.ResponseHeaderTimeout).UnixNano()
		}
	}
	if x.reqPipe.Ended() {
		x.cc.end.Pause()
	}
	x.watchIfNeeded()
}

// upstreamTraffic reads the response head, then streams its body.
func (x *httpExchange) upstreamTraffic(u *upstreamConn) {
	switch {
	case u != x.up:
		_, _ = u.end.Conn().Discard(-1)
	case x.st == hHandshake:
		x.socksHandshake()
	case x.st == hSending:
		x.responseHead()
	case x.st == hStreaming:
		x.afterResponseBytes(x.respPipe.OnTraffic())
	default:
		_, _ = u.end.Conn().Discard(-1)
	}
}

// responseHead parses and forwards the upstream's response head (and any
// interim 1xx heads before it).
func (x *httpExchange) responseHead() {
	cc, resp := x.cc, &x.cc.ls.resp
	for x.st == hSending && x.up != nil && x.up.end.Conn() != nil {
		buf, _ := x.up.end.Conn().Peek(-1)
		if len(buf) == 0 {
			return
		}
		n, err := resp.Parse(buf)
		if errors.Is(err, httpparse.ErrNeedMore) {
			if len(buf) > cc.e.cfg.MaxHeaderBytes {
				x.fail(proxystatus.New(proxystatus.HTTPResponseError, "upstream response head too large"))
			}
			return
		}
		if err != nil {
			x.fail(proxystatus.New(proxystatus.HTTPResponseError, "malformed response from upstream"))
			return
		}
		st := resp.Status
		if x.pooled {
			x.up.pk.reused()
		} else if !x.fwd.Upstream.Scheme.IsSOCKS() && cc.rec.headOut == 0 {
			// A fresh connection's first answer (a SOCKS5 upstream
			// reported at its handshake).
			cc.ls.reportAttempt(&x.ups, x.up.idx, nil)
		}
		if st == 407 {
			cc.e.cfg.Observer.UpstreamHandshake(time.Since(x.hsStart), proxystatus.HTTPRequestDenied)
			x.fail(&proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Received: 407, Detail: "upstream proxy refused the credentials"})
			return
		}
		// proxyto speaks HTTP/1.1 to its clients whatever the upstream's
		// version (RFC 9110 §2.5: an intermediary sends its own version);
		// status code and reason phrase are the upstream's.
		out := append(cc.ls.scratch[:0], "HTTP/1.1 "...)
		out = strconv.AppendInt(out, int64(st), 10)
		out = append(out, ' ')
		out = append(out, resp.Reason.Bytes(buf)...)
		out = append(out, "\r\n"...)
		if st/100 == 1 && !(st == 101 && x.upgrade) {
			// Interim answer (100 Continue, 103 Early Hints): pass it on.
			out = resp.AppendEndToEnd(out, buf, false)
			out = append(out, "\r\n"...)
			cc.ls.scratch = out[:0]
			cc.rec.headOut += int64(len(out))
			_, _ = x.up.end.Conn().Discard(n) // out is a copy
			_ = cc.end.Write(out)             // may end the exchange (the client closed): the loop checks
			continue
		}
		cc.e.cfg.Observer.UpstreamHandshake(time.Since(x.hsStart), proxystatus.None)
		if st == 101 {
			out = resp.AppendEndToEnd(out, buf, true) // adds Connection: Upgrade
			out = append(out, "\r\n"...)
			cc.ls.scratch = out[:0]
			cc.rec.headOut += int64(len(out))
			cc.rec.status = 101
			_, _ = x.up.end.Conn().Discard(n)
			if _ = cc.end.Write(out); x.st == hSending {
				x.becomeTunnel()
			}
			return
		}
		var f tunnel.Framing
		switch {
		case resp.NoBody(x.isHead):
			f = tunnel.Empty()
		case resp.Chunked:
			f = tunnel.Chunked()
		case resp.ContentLength >= 0:
			f = tunnel.Length(resp.ContentLength)
		default:
			f, x.respUntil = tunnel.Unlimited(), true
		}
		x.reusable = !resp.WantsClose(x.isHead)
		enc, cf := x.encoder(resp, buf)
		// A body that runs until the upstream closes must end the client's
		// connection too, unless compression frames it in chunks.
		if x.respUntil && (enc == nil || cf != compression.Chunked) || cc.e.draining.Load() {
			x.closeCli = true
		}
		if enc != nil {
			if cf == compression.UntilClose {
				x.closeCli = true // the body ends when the connection does
			}
			out = compression.AppendHeader(out, resp, buf, cf)
		} else {
			out = resp.AppendEndToEnd(out, buf, false)
		}
		if x.closeCli {
			out = append(out, "Connection: close\r\n"...)
		} else if x.fwd.Minor == 0 {
			out = append(out, "Connection: keep-alive\r\n"...)
		}
		out = append(out, "\r\n"...)
		cc.ls.scratch = out[:0]
		cc.rec.status = st
		cc.rec.headOut += int64(len(out))
		x.setState(hStreaming)
		x.lastActive = time.Now().UnixNano()
		cc.deadline = x.lastActive + int64(cc.e.cfg.TunnelIdleTimeout)
		// Body bytes that arrived with the head leave in the same write:
		// one system call for a small response instead of two.
		if enc != nil {
			x.afterResponseBytes(x.respPipe.StartTransformed(&x.up.end, &cc.end, f, out, n, enc))
			return
		}
		x.afterResponseBytes(x.respPipe.StartAfter(&x.up.end, &cc.end, f, out, n))
		return
	}
}

// encoder decides, with Config.Compress, whether the response parsed from
// buf is gzipped for the client, and if so returns the encoder (which the
// response pipe then owns) and the client's framing. It is nil when a rule
// refuses, or when the encoder pool is at its bound (the response goes as
// it is).
func (x *httpExchange) encoder(resp *httpparse.Response, buf []byte) (*compression.Encoder, compression.Framing) {
	e := x.cc.e
	if e.gz == nil {
		return nil, 0
	}
	v := compression.Decide(x.gzipOK, x.isHead, resp, buf)
	var enc *compression.Encoder
	cf := compression.FramingFor(x.fwd.Minor)
	if v == compression.Compress {
		if enc = e.gz.Get(cf); enc == nil {
			v = compression.Busy
		}
	}
	e.cfg.Observer.CompressionDecided(v)
	return enc, cf
}

// afterResponseBytes reports response body bytes and finishes a complete
// response.
func (x *httpExchange) afterResponseBytes(err error) {
	if err != nil && !errors.Is(err, tunnel.ErrDestination) {
		x.fail(proxystatus.New(proxystatus.HTTPResponseError, "malformed chunked response from upstream"))
		return
	}
	if n := x.respPipe.Moved - x.reported[1]; n > 0 {
		x.reported[1] += n
		x.cc.relayed(0, n)
		x.lastActive = time.Now().UnixNano()
	}
	if x.st == hStreaming && x.respPipe.Ended() {
		x.finish()
		return
	}
	x.watchIfNeeded()
}

// becomeTunnel hands the connections to a tunnel after a 101.
func (x *httpExchange) becomeTunnel() {
	cc, u := x.cc, x.up
	x.up = nil
	x.setState(hUpgraded)
	x.end()
	t := &tunnelExchange{cc: cc}
	cc.x = t
	t.upgrade(u)
}

// finish ends the exchange once its response is complete: the upstream
// connection goes back to the pool when reusable, and the client connection
// reads its next request or closes.
func (x *httpExchange) finish() {
	cc := x.cc
	closeCli := x.closeCli
	if x.hasBody && !x.reqPipe.Ended() {
		// The upstream answered before the whole body arrived: what is left
		// of the body is unknown ground, so neither connection is reused.
		closeCli, x.reusable = true, false
	}
	x.setState(hDone)
	if u := x.up; u != nil {
		x.up = nil
		c := u.end.Conn()
		if x.reusable && c != nil && c.InboundBuffered() == 0 && !cc.e.draining.Load() {
			u.end.Resume()
			cc.ls.pool.put(u, x.ups.entry(u.idx))
		} else {
			x.drop(u)
		}
	}
	x.end()
	cc.exchangeDone(closeCli)
}

// drop closes an upstream connection the exchange no longer wants; its
// OnClose then finds no owner.
func (x *httpExchange) drop(u *upstreamConn) {
	u.x, u.dead = nil, true
	u.end.Close()
}

// end releases what the exchange held and makes it idle.
func (x *httpExchange) end() {
	x.respPipe.Release() // the encoder of a response that did not finish
	x.ups.release(x.cc.ls)
	x.ups.authSeen = x.ups.authSeen[:0]
	x.dropReplay()
	x.setState(hIdle)
	x.cc.x = nil
}

// fail ends the exchange with an error: answered when nothing of the
// response reached the client yet, otherwise by closing the connection.
func (x *httpExchange) fail(pe *proxystatus.Error) {
	cc := x.cc
	x.ups.gen++ // a late dial result is dropped
	if x.up != nil {
		x.drop(x.up)
		x.up = nil
	}
	streaming := x.st == hStreaming
	x.setState(hFailed)
	x.end()
	if streaming {
		cc.rec.errType, cc.rec.detail = pe.Type, pe.Detail
		cc.logExchange()
		cc.closeNow()
		return
	}
	cc.fail(pe)
}

// upstreamClosed handles the upstream closing mid-exchange.
func (x *httpExchange) upstreamClosed(u *upstreamConn, err error) {
	u.end.Gone()
	if u != x.up {
		return
	}
	switch x.st {
	case hSending:
		if x.cc.rec.headOut == 0 && x.pooled && !x.retried && !(x.hasBody && x.reqStarted && x.reqPipe.KeepLost()) {
			x.retry()
			return
		}
		fallthrough
	case hHandshake:
		pe := proxystatus.New(proxystatus.ConnectionTerminated, "upstream closed the connection before answering")
		if connectFailed(err) {
			// A dial on the loop whose connect failed: nothing went out.
			pe = upstream.Classify(err)
			x.cc.rec.headIn = 0
		}
		x.cc.e.cfg.Observer.UpstreamHandshake(time.Since(x.hsStart), pe.Type)
		if !x.pooled && x.cc.rec.headOut == 0 && (x.st == hHandshake || !x.fwd.Upstream.Scheme.IsSOCKS()) {
			// A fresh connection the upstream closed: its own failure
			// (through SOCKS5, once connected, it is the origin's).
			x.cc.ls.reportAttempt(&x.ups, u.idx, pe)
		}
		x.fail(pe)
	case hStreaming:
		if x.respUntil {
			// The body ended with the connection; a compressed one still
			// owes the client its end.
			if x.respPipe.EndMessage() != nil {
				x.closeCli = true
			}
			x.finish()
			return
		}
		x.fail(proxystatus.New(proxystatus.ConnectionTerminated, "upstream closed the connection mid-response"))
	}
}

// retry sends the request again on a fresh connection: a reused connection
// the upstream had closed cannot be told from a request that was never
// sent, and every body byte sent is at hand.
func (x *httpExchange) retry() {
	u := x.up
	u.pk.closedByUpstream(u, time.Now().UnixNano())
	x.up, u.x = nil, nil
	x.retried, x.pooled = true, false
	x.cc.e.cfg.Observer.PoolUsed(false)
	x.dial()
}

// clientClosed handles the client going away mid-exchange.
func (x *httpExchange) clientClosed(error) {
	cc := x.cc
	cc.end.Gone()
	switch x.st {
	case hDialing, hHandshake, hSending, hStreaming:
		cc.rec.detail = "client closed during the exchange"
		cc.logExchange()
		x.ups.gen++
		if x.up != nil {
			x.drop(x.up)
			x.up = nil
		}
		x.setState(hFailed)
		x.end()
	}
}

// dialFailed runs on the loop when every upstream of the list failed.
func (x *httpExchange) dialFailed(gen uint32, tried int, pe *proxystatus.Error) {
	if x.st != hDialing || gen != x.ups.gen {
		return
	}
	// The access line names the upstream that failed last.
	if tried < x.ups.n {
		x.cc.rec.upHost = x.ups.entry(tried).AppendHostPort(x.cc.rec.upHost[:0])
	}
	x.fail(pe)
}

// expire handles a passed deadline.
func (x *httpExchange) expire(now int64) {
	cc := x.cc
	switch x.st {
	case hDialing:
		x.fail(proxystatus.New(proxystatus.ConnectionTimeout, "upstream did not accept the connection in time"))
	case hHandshake, hSending:
		if pe, next := x.up.connectExpired(now, x.hsStart); pe != nil {
			x.fail(pe)
			return
		} else if next != 0 {
			cc.deadline = next
			return
		}
		cc.e.cfg.Observer.UpstreamHandshake(time.Since(x.hsStart), proxystatus.HTTPResponseTimeout)
		pe := proxystatus.New(proxystatus.HTTPResponseTimeout, "upstream did not answer in time")
		if x.st == hHandshake {
			cc.ls.reportAttempt(&x.ups, x.up.idx, pe) // the SOCKS5 upstream's own answer
		}
		x.fail(pe)
	case hStreaming:
		idle := int64(cc.e.cfg.TunnelIdleTimeout)
		if now-x.lastActive >= idle {
			x.fail(proxystatus.New(proxystatus.HTTPResponseTimeout, "response body stalled"))
			return
		}
		cc.deadline = x.lastActive + idle
	default:
		cc.deadline = 0
	}
}

// watchIfNeeded keeps the exchange serviced while a pipe waits.
func (x *httpExchange) watchIfNeeded() {
	if (x.reqStarted && x.reqPipe.NeedsService()) || (x.st == hStreaming && x.respPipe.NeedsService()) {
		x.cc.ls.watch(x)
	}
}

// service resumes a paused side once its peer drained.
func (x *httpExchange) service() bool {
	if x.st != hSending && x.st != hStreaming {
		return false
	}
	if x.st == hStreaming {
		x.afterResponseBytes(x.respPipe.Service())
	}
	if (x.st == hSending || x.st == hStreaming) && x.reqStarted && x.up != nil {
		x.afterRequestBytes(x.reqPipe.Service())
	}
	return (x.st == hSending || x.st == hStreaming) &&
		((x.reqStarted && x.reqPipe.NeedsService()) || (x.st == hStreaming && x.respPipe.NeedsService()))
}

func (x *httpExchange) watched() *bool { return &x.isWatched }

func (x *httpExchange) over() bool { return x.st == hIdle }

func (x *httpExchange) upstream() *upstreamConn { return x.up }

// dropReplay returns the replay buffer, if any.
func (x *httpExchange) dropReplay() {
	if x.replay != nil {
		replayBufs.Put(x.replay)
		x.replay = nil
	}
}

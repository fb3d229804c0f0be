package engine

import (
	"errors"
	"strconv"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/tunnel"
)

// Plain-HTTP forwarding: one request at a time per client connection
// (pipelined requests wait in the client's input, paused), its body streamed
// upstream within its framing, the response head rewritten only by dropping
// hop-by-hop fields, and the response body streamed back within its framing.

// bodyKind is how a message body is delimited.
type bodyKind uint8

const (
	bodyNone    bodyKind = iota // no body
	bodyLength                  // Content-Length bytes
	bodyChunked                 // chunked coding, ends with the last chunk and trailers
	bodyClose                   // until the upstream closes (responses only)
)

// fwdState is the per-exchange state of a forwarded request.
type fwdState struct {
	url      []byte // absolute-form target sent to http/https upstreams
	path     []byte // origin-form target sent over SOCKS5
	minor    uint8  // client's HTTP minor version, kept on the request line
	addHost  bool   // the client sent no Host: add one (origin-form upstream requests need it)
	isHead   bool
	upgrade  bool
	closeCli bool // close the client connection after this exchange

	req      bodyKind
	reqLeft  int64
	reqChunk httpparse.ChunkScanner
	reqDone  bool
	reqSent  int64 // request body bytes sent upstream

	respHead  bool // response head forwarded
	resp      bodyKind
	respLeft  int64
	respChunk httpparse.ChunkScanner
	respDone  bool
	reusable  bool // the upstream connection may go back to the pool

	pooled  bool // s.up came from the pool
	retried bool
	// replay holds the request body bytes sent on a reused connection, so
	// that a failure before any response byte can be retried on a fresh
	// one whatever the method; replayLost once they outgrew replayMax.
	replay     *bytebufferpool.ByteBuffer
	replayLost bool
	upPaused   bool // upstream reads masked for backpressure (the client's: session.paused)
	flush      bool // closing the client once its queue drained
}

// beginForward starts forwarding a plain-HTTP request.
func (s *session) beginForward(buf []byte, n int) {
	r := &s.ls.req
	if s.fwd == nil {
		s.fwd = &fwdState{}
	}
	f := s.fwd
	f.dropReplay()
	*f = fwdState{url: f.url[:0], path: f.path[:0]}
	f.minor, f.isHead = r.Minor, r.Head
	f.closeCli = r.WantsClose()
	socks := s.list.Upstreams()[0].Scheme == httpparse.SchemeSOCKS5 || s.list.Upstreams()[0].Scheme == httpparse.SchemeSOCKS5H
	switch r.Form {
	case httpparse.FormAbsolute:
		if !r.TargetSchemeIs(buf, "http") && (socks || !r.TargetSchemeIs(buf, "https")) {
			s.fail(proxystatus.New(proxystatus.HTTPRequestError, "only http:// targets can be forwarded; use CONNECT for TLS"))
			return
		}
		s.fwdAuthority = append(s.fwdAuthority[:0], r.TargetAuthority.Bytes(buf)...)
		f.url = append(f.url, r.Target.Bytes(buf)...)
		f.path = append(f.path, r.TargetPath.Bytes(buf)...)
		if len(f.path) == 0 {
			f.path = append(f.path, '/')
		} else if f.path[0] == '?' {
			f.path = append(append(f.path[:0], '/'), r.TargetPath.Bytes(buf)...)
		}
		f.addHost = !r.HasHost
	case httpparse.FormOrigin:
		if !r.HasHost || r.Host.Len() == 0 {
			s.fail(proxystatus.New(proxystatus.HTTPRequestError, "origin-form request without Host"))
			return
		}
		host := r.Host.Bytes(buf)
		if _, _, _, ok := httpparse.SplitHostPort(host, 80); !ok {
			s.fail(proxystatus.New(proxystatus.HTTPRequestError, "invalid Host header"))
			return
		}
		s.fwdAuthority = append(s.fwdAuthority[:0], host...)
		f.url = append(append(append(f.url, "http://"...), host...), r.Target.Bytes(buf)...)
		f.path = append(f.path, r.Target.Bytes(buf)...)
		s.target = append(s.target[:0], f.url...)
	default:
		s.fail(proxystatus.New(proxystatus.HTTPRequestError, "request target must be an absolute URL or a path with Host"))
		return
	}
	if r.Upgrade && r.UpgradeValue.Len() > 0 {
		f.upgrade = true
		s.kind = KindUpgrade
	}
	switch {
	case r.Chunked:
		f.req = bodyChunked
	case r.ContentLength > 0:
		f.req, f.reqLeft = bodyLength, r.ContentLength
	default:
		f.reqDone = true
	}
	s.e2e = r.AppendEndToEnd(s.e2e[:0], buf, f.upgrade, false)
	_, _ = s.client.Discard(n)

	// A client whose credentials still await Verify (bcrypt, off the loop)
	// goes through the dial path, which runs it: a pooled connection must
	// not let it skip that.
	if c, pc := s.ls.pool.get(s.list, 0, len(s.authSeen) == 0); c != nil {
		s.upPool = pc
		s.e.cfg.Observer.PoolUsed(true)
		f.pooled = true
		s.attachUpstream(c, 0)
		return
	}
	s.e.cfg.Observer.PoolUsed(false)
	s.startDial()
}

// attachUpstream sends the request on an upstream connection taken from
// the pool.
func (s *session) attachUpstream(c gnetConn, idx int) {
	s.up = c
	c.SetContext(s)
	s.upIdx = idx
	u := &s.list.Upstreams()[idx]
	s.upHost = u.AppendHostPort(s.upHost[:0])
	s.hsStart = time.Now()
	out := s.appendForwardHead(s.ls.scratch[:0], u)
	s.ls.scratch = out[:0]
	s.headIn += int64(len(out))
	_, _ = c.Write(out)
	s.afterForwardHeadSent()
}

// appendForwardHead appends the request head for the upstream u (nil: the
// SOCKS5 tunnel is open, send origin-form).
func (s *session) appendForwardHead(dst []byte, u *httpparse.Upstream) []byte {
	f := s.fwd
	if u == nil {
		u = &s.list.Upstreams()[s.upIdx]
	}
	socks := u.Scheme == httpparse.SchemeSOCKS5 || u.Scheme == httpparse.SchemeSOCKS5H
	dst = append(dst, s.method...)
	dst = append(dst, ' ')
	if socks {
		dst = append(dst, f.path...)
	} else {
		dst = append(dst, f.url...)
	}
	dst = append(dst, " HTTP/1."...)
	dst = append(dst, '0'+f.minor)
	dst = append(dst, "\r\n"...)
	if f.addHost {
		dst = append(dst, "Host: "...)
		dst = append(dst, s.fwdAuthority...)
		dst = append(dst, "\r\n"...)
	}
	if !socks && u.HasAuth {
		dst = upstreamAuth(dst, u)
	}
	dst = append(dst, s.e2e...) // with Connection: Upgrade when upgrading
	return append(dst, "\r\n"...)
}

// afterForwardHeadSent waits for the response and streams the request body.
func (s *session) afterForwardHeadSent() {
	s.setState(stateForwarding)
	s.hsStart = time.Now()
	s.deadline = s.hsStart.Add(s.e.cfg.ResponseHeaderTimeout).UnixNano()
	f := s.fwd
	if f.retried && f.replay != nil {
		// The body bytes the failed connection took go out again first.
		_, _ = s.up.Write(f.replay.B)
		f.dropReplay()
	}
	if !f.reqDone {
		s.resumeFwd(tunnel.Client)
		s.forwardClientTraffic()
	}
}

// forwardClientTraffic streams request body bytes within their framing.
func (s *session) forwardClientTraffic() {
	f, c := s.fwd, s.client
	if c == nil {
		return
	}
	if f.reqDone || s.up == nil {
		// The next pipelined request (or the body before the upstream is
		// connected) waits in gnet's buffer.
		s.pauseFwd(tunnel.Client)
		return
	}
	for !f.reqDone && s.up != nil && s.client != nil {
		data, _ := c.Peek(-1)
		if len(data) == 0 {
			return
		}
		k := len(data)
		switch f.req {
		case bodyLength:
			if int64(k) > f.reqLeft {
				k = int(f.reqLeft)
			}
			f.reqLeft -= int64(k)
			f.reqDone = f.reqLeft == 0
		case bodyChunked:
			var done bool
			var err error
			k, done, err = f.reqChunk.Scan(data)
			if err != nil {
				s.fwdFail(proxystatus.New(proxystatus.HTTPRequestError, "malformed chunked request body: "+parseDetail(err)))
				return
			}
			f.reqDone = done
		}
		if k > 0 {
			if f.pooled && !f.retried {
				f.keepForReplay(data[:k])
			}
			_, _ = s.up.Write(data[:k])
			f.reqSent += int64(k)
			s.moved(int64(k), 0)
			if !f.respHead {
				// The wait for the answer counts from the end of the
				// request: a slow upload is not an upstream that hangs.
				s.deadline = time.Now().Add(s.e.cfg.ResponseHeaderTimeout).UnixNano()
			}
		}
		if s.client != nil {
			_, _ = s.client.Discard(k)
		}
		if s.up != nil && s.up.OutboundBuffered() >= s.e.cfg.RelayHighWater {
			s.pauseFwd(tunnel.Client)
			return
		}
		if k == 0 {
			return
		}
	}
	if f.reqDone {
		s.pauseFwd(tunnel.Client)
		if f.respDone {
			s.finishExchange()
		}
	}
}

// forwardUpstreamTraffic reads the response head, then streams its body.
func (s *session) forwardUpstreamTraffic() {
	if !s.fwd.respHead {
		s.forwardResponseHead()
		return
	}
	s.forwardResponseBody()
}

// forwardResponseHead parses and forwards the upstream's response head
// (and any interim 1xx heads before it).
func (s *session) forwardResponseHead() {
	f := s.fwd
	for s.up != nil && !f.respHead && s.state == stateForwarding {
		buf, _ := s.up.Peek(-1)
		if len(buf) == 0 {
			return
		}
		n, err := s.ls.resp.Parse(buf)
		if errors.Is(err, httpparse.ErrNeedMore) {
			if len(buf) > s.e.cfg.MaxHeaderBytes {
				s.fwdFail(proxystatus.New(proxystatus.HTTPResponseError, "upstream response head too large"))
			}
			return
		}
		if err != nil {
			s.fwdFail(proxystatus.New(proxystatus.HTTPResponseError, "malformed response from upstream"))
			return
		}
		st := s.ls.resp.Status
		if f.pooled {
			s.upPool.reused()
		}
		if st == 407 {
			s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), proxystatus.HTTPRequestDenied)
			s.fwdFail(&proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Received: 407, Detail: "upstream proxy refused the credentials"})
			return
		}
		// proxyto speaks HTTP/1.1 to its clients whatever the upstream's
		// version (RFC 9110 §2.5: an intermediary sends its own version);
		// status code and reason phrase are the upstream's.
		out := append(s.ls.scratch[:0], "HTTP/1.1 "...)
		out = strconv.AppendInt(out, int64(st), 10)
		out = append(out, ' ')
		out = append(out, s.ls.resp.Reason.Bytes(buf)...)
		out = append(out, "\r\n"...)
		if st == 101 && f.upgrade {
			out = s.ls.resp.AppendEndToEnd(out, buf, true) // adds Connection: Upgrade
			out = append(out, "\r\n"...)
			s.ls.scratch = out[:0]
			_, _ = s.up.Discard(n)
			s.writeClient(out)
			s.status = 101
			s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), proxystatus.None)
			s.fwd.upPaused = false
			s.startRelay()
			return
		}
		if st/100 == 1 {
			// Interim answer (100 Continue, 103 Early Hints): pass it on.
			out = s.ls.resp.AppendEndToEnd(out, buf, false)
			out = append(out, "\r\n"...)
			s.ls.scratch = out[:0]
			_, _ = s.up.Discard(n)
			s.writeClient(out)
			continue
		}
		s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), proxystatus.None)
		switch {
		case s.ls.resp.NoBody(f.isHead):
			f.resp, f.respDone = bodyNone, true
		case s.ls.resp.Chunked:
			f.resp = bodyChunked
		case s.ls.resp.ContentLength >= 0:
			f.resp, f.respLeft = bodyLength, s.ls.resp.ContentLength
			f.respDone = f.respLeft == 0
		default:
			f.resp = bodyClose
		}
		f.reusable = !s.ls.resp.WantsClose(f.isHead)
		if f.resp == bodyClose || s.e.draining.Load() {
			f.closeCli = true
		}
		out = s.ls.resp.AppendEndToEnd(out, buf, false)
		if f.closeCli {
			out = append(out, "Connection: close\r\n"...)
		} else if f.minor == 0 {
			out = append(out, "Connection: keep-alive\r\n"...)
		}
		out = append(out, "\r\n"...)
		s.ls.scratch = out[:0]
		s.status = st
		f.respHead = true
		s.lastActive = time.Now().UnixNano()
		s.deadline = s.lastActive + int64(s.e.cfg.TunnelIdleTimeout)
		// Body bytes that arrived with the head leave in the same write:
		// one system call for a small response instead of two.
		k := 0
		if !f.respDone {
			var err error
			if k, err = s.takeBody(buf[n:]); err != nil {
				s.fwdFail(proxystatus.New(proxystatus.HTTPResponseError, "malformed chunked response from upstream"))
				return
			}
		}
		s.headOut += int64(len(out))
		if k > 0 {
			s.ls.iov[0], s.ls.iov[1] = out, buf[n:n+k]
			_, _ = s.client.Writev(s.ls.iov[:])
			s.ls.iov[0], s.ls.iov[1] = nil, nil
			s.moved(0, int64(k))
		} else {
			_, _ = s.client.Write(out)
		}
		// Discard only now: buf may be a pooled copy that Discard recycles.
		if s.up != nil {
			_, _ = s.up.Discard(n + k)
		}
		if s.client != nil && s.paused {
			_ = s.ls.poller.Pause(s.client)
		}
		if f.respDone {
			s.finishExchange()
			return
		}
		s.forwardResponseBody()
	}
}

// takeBody advances the response framing over data, the upstream's next
// bytes, and returns how many of them belong to the body.
func (s *session) takeBody(data []byte) (int, error) {
	f := s.fwd
	k := len(data)
	switch f.resp {
	case bodyLength:
		if int64(k) > f.respLeft {
			k = int(f.respLeft)
		}
		f.respLeft -= int64(k)
		f.respDone = f.respLeft == 0
	case bodyChunked:
		var err error
		if k, f.respDone, err = f.respChunk.Scan(data); err != nil {
			return 0, err
		}
	}
	return k, nil
}

// writeClient sends response bytes to the client.
func (s *session) writeClient(p []byte) {
	if s.client == nil {
		return
	}
	s.headOut += int64(len(p))
	_, _ = s.client.Write(p)
	if s.client != nil && s.paused {
		_ = s.ls.poller.Pause(s.client)
	}
}

// forwardResponseBody streams response body bytes within their framing.
func (s *session) forwardResponseBody() {
	f := s.fwd
	for s.up != nil && s.client != nil && !f.respDone {
		data, _ := s.up.Peek(-1)
		if len(data) == 0 {
			return
		}
		k, err := s.takeBody(data)
		if err != nil {
			s.fwdFail(proxystatus.New(proxystatus.HTTPResponseError, "malformed chunked response from upstream"))
			return
		}
		if k > 0 {
			_, _ = s.client.Write(data[:k])
			if s.client != nil && s.paused {
				_ = s.ls.poller.Pause(s.client)
			}
			s.moved(0, int64(k))
			s.lastActive = time.Now().UnixNano()
		}
		if s.up != nil {
			_, _ = s.up.Discard(k)
		}
		if s.client != nil && s.client.OutboundBuffered() >= s.e.cfg.RelayHighWater {
			s.pauseFwd(tunnel.Upstream)
			return
		}
		if k == 0 {
			return
		}
	}
	if f.respDone {
		s.finishExchange()
	}
}

// finishExchange ends a forwarded exchange once its response is complete:
// the upstream connection goes back to the pool when reusable, and the
// client connection reads its next request or closes.
func (s *session) finishExchange() {
	f := s.fwd
	f.dropReplay()
	if !f.reqDone {
		// The upstream answered before the whole body arrived: what is left
		// of the body is unknown ground, so neither connection is reused.
		f.closeCli, f.reusable = true, false
	}
	s.logExchange()
	if up := s.up; up != nil {
		s.up = nil
		if f.reusable && up.InboundBuffered() == 0 && !s.e.draining.Load() {
			if f.upPaused {
				_ = s.ls.poller.Resume(up)
			}
			s.ls.pool.put(s, up)
		} else {
			up.SetContext(nil)
			_ = up.Close()
		}
	}
	f.upPaused = false
	if f.closeCli || s.client == nil {
		s.flushThenClose()
		return
	}
	s.setState(stateReadingHead)
	s.headStart = 0
	s.status, s.headOut, s.headIn, s.errType, s.detail = 0, 0, 0, proxystatus.None, ""
	s.deadline = time.Now().Add(s.e.cfg.IdleTimeout).UnixNano()
	s.resumeFwd(tunnel.Client)
	if s.client.InboundBuffered() > 0 {
		s.readHead()
	}
}

// flushThenClose closes the client once everything queued for it is sent
// (gnet's own close would drop what the socket did not take at once).
func (s *session) flushThenClose() {
	s.setState(stateClosing)
	s.fwd.flush = true
	if s.client == nil {
		s.maybeFinish()
		return
	}
	s.deadline = time.Now().Add(s.e.cfg.TunnelIdleTimeout).UnixNano()
	if s.client.OutboundBuffered() == 0 {
		s.fwd.flush = false
		s.lingerClose()
		return
	}
	s.ls.watch(s)
}

// fwdFail ends a forwarded exchange with an error: answered when nothing of
// the response reached the client yet, otherwise by closing (SPEC §4).
func (s *session) fwdFail(pe *proxystatus.Error) {
	if s.fwd.respHead {
		s.errType, s.detail = pe.Type, pe.Detail
		s.logExchange()
		s.closeUpstream()
		s.closeClient()
		s.setState(stateClosing)
		return
	}
	s.fail(pe)
}

// forwardExpire handles a deadline while forwarding.
func (s *session) forwardExpire(now int64) {
	if !s.fwd.respHead {
		s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), proxystatus.HTTPResponseTimeout)
		s.fwdFail(proxystatus.New(proxystatus.HTTPResponseTimeout, "upstream did not answer in time"))
		return
	}
	idle := int64(s.e.cfg.TunnelIdleTimeout)
	if now-s.lastActive >= idle {
		s.fwdFail(proxystatus.New(proxystatus.HTTPResponseTimeout, "response body stalled"))
		return
	}
	s.deadline = s.lastActive + idle
}

func (s *session) forwardClientClosed() {
	s.detail = "client closed during the exchange"
	s.logExchange()
	s.closeUpstream()
}

// forwardUpstreamClosed handles the upstream closing mid-exchange.
func (s *session) forwardUpstreamClosed(err error) {
	f := s.fwd
	switch {
	case !f.respHead && s.headOut == 0 && f.pooled && !f.retried && !f.replayLost:
		// A reused connection the upstream had closed: the client cannot
		// tell this from a request that was never sent, and every body
		// byte sent is at hand, so it goes again once, on a fresh
		// connection, whatever the method.
		if s.upPool != nil && s.upPool.pk != nil {
			s.upPool.pk.closedByUpstream(s.upPool, time.Now().UnixNano())
		}
		s.upPool = nil
		f.retried, f.pooled = true, false
		s.e.cfg.Observer.PoolUsed(false)
		s.pauseFwd(tunnel.Client)
		s.startDial()
	case !f.respHead:
		pe := proxystatus.New(proxystatus.ConnectionTerminated, "upstream closed the connection before answering")
		s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), pe.Type)
		s.fwdFail(pe)
	case f.resp == bodyClose:
		f.respDone = true
		s.finishExchange()
	case !f.respDone:
		s.fwdFail(proxystatus.New(proxystatus.ConnectionTerminated, "upstream closed the connection mid-response"))
	}
}

// pauseFwd and resumeFwd mask a side's reads while forwarding.
func (s *session) pauseFwd(side tunnel.Side) {
	c := s.side(side)
	p := s.pausedFlag(side)
	if c == nil || *p {
		return
	}
	*p = true
	_ = s.ls.poller.Pause(c)
	if side == tunnel.Upstream || !s.fwd.reqDone {
		s.ls.watch(s)
	}
}

func (s *session) resumeFwd(side tunnel.Side) {
	c := s.side(side)
	p := s.pausedFlag(side)
	if c == nil || !*p {
		return
	}
	*p = false
	_ = s.ls.poller.Resume(c)
}

// pausedFlag is where a side's masked-reads state is kept.
func (s *session) pausedFlag(side tunnel.Side) *bool {
	if side == tunnel.Client {
		return &s.paused
	}
	return &s.fwd.upPaused
}

func (s *session) side(side tunnel.Side) gnetConn {
	if side == tunnel.Client {
		return s.client
	}
	return s.up
}

// forwardService resumes a paused side once its peer drained, and finishes
// a flush-then-close.
func (s *session) forwardService() {
	f := s.fwd
	if f == nil {
		return
	}
	if f.flush {
		if s.client == nil || s.client.OutboundBuffered() == 0 {
			f.flush = false
			s.lingerClose()
		}
		return
	}
	if s.state != stateForwarding {
		return
	}
	lw := s.e.cfg.RelayLowWater
	if f.upPaused && s.client != nil && s.client.OutboundBuffered() <= lw {
		s.resumeFwd(tunnel.Upstream)
		s.forwardResponseBody()
	}
	if s.state == stateForwarding && s.paused && !f.reqDone && s.up != nil && s.up.OutboundBuffered() <= lw {
		s.resumeFwd(tunnel.Client)
		s.forwardClientTraffic()
	}
}

func (s *session) forwardNeedsService() bool {
	f := s.fwd
	if f == nil {
		return false
	}
	return f.flush || (s.state == stateForwarding && (f.upPaused || (s.paused && !f.reqDone && s.up != nil)))
}

// moved reports body bytes forwarded.
func (s *session) moved(up, down int64) {
	s.reported[0] += up
	s.reported[1] += down
	s.e.cfg.Observer.Relayed(int(up), int(down))
}

// replayMax bounds the request body kept for a retry on a fresh connection:
// small bodies (forms, JSON, API calls) are the common case, and the bound
// keeps a session's memory small. Larger bodies keep the old rule: a retry
// only when nothing of the body had been sent.
const replayMax = 64 << 10

// replayBufs recycles replay buffers between exchanges.
var replayBufs bytebufferpool.Pool

// keepForReplay copies body bytes sent on a reused connection.
func (f *fwdState) keepForReplay(p []byte) {
	if f.replayLost {
		return
	}
	if f.replay == nil {
		f.replay = replayBufs.Get()
	}
	if len(f.replay.B)+len(p) > replayMax {
		f.replayLost = true
		f.dropReplay()
		return
	}
	f.replay.B = append(f.replay.B, p...)
}

// dropReplay returns the replay buffer, if any.
func (f *fwdState) dropReplay() {
	if f != nil && f.replay != nil {
		replayBufs.Put(f.replay)
		f.replay = nil
	}
}

// upstreamAuth appends Proxy-Authorization for u.
func upstreamAuth(dst []byte, u *httpparse.Upstream) []byte {
	dst = append(dst, "Proxy-Authorization: "...)
	dst = httpparse.AppendBasicAuth(dst, u.User, u.Pass)
	return append(dst, "\r\n"...)
}

package engine

import (
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/upstream"
)

// beginConnect starts a CONNECT exchange: the target and the client's
// end-to-end headers are copied (the Peek slice dies with this callback), the
// head is consumed, and the dial starts. The client's reads are masked at
// once: bytes it sends before the 200 stay queued in gnet and the socket, and
// so does a FIN, which gnet would otherwise take for the end of the whole
// connection. The relay starts with them after the 200 (early data, then a
// half-close passed on to the upstream).
func (s *session) beginConnect(buf []byte, n int) {
	s.e2e = s.ls.req.AppendEndToEnd(s.e2e[:0], buf, false, true)
	_, _ = s.client.Discard(n)
	if !s.paused {
		s.paused = true
		_ = s.ls.poller.Pause(s.client)
	}
	s.startDial()
}

// startDial hands the upstream list to the dial pool.
func (s *session) startDial() {
	s.setState(stateDialing)
	s.gen++
	ups := s.list.Upstreams()
	j := &dialJob{s: s, gen: s.gen, el: s.ls.el}
	for i := range ups {
		u := &ups[i]
		j.targets = append(j.targets, dialTarget{
			idx: i,
			t:   upstream.Target{Host: string(u.Host), Port: u.Port, TLS: u.Scheme == httpparse.SchemeHTTPS},
		})
	}
	if len(s.authSeen) > 0 {
		j.auth = append([]byte(nil), s.authSeen...)
	}
	if hasScheme(ups, httpparse.SchemeSOCKS5) {
		host, _, _, ok := httpparse.SplitHostPort(s.connectAuthority(), 0)
		if ok {
			j.resolve = string(host)
		}
	}
	// A dial that hangs past its own timeouts still ends here.
	per := s.e.cfg.DialTimeout + time.Second
	s.deadline = time.Now().Add(per * time.Duration(len(ups))).UnixNano()
	s.e.dials.submit(s.e, j)
}

func hasScheme(ups []httpparse.Upstream, sc httpparse.Scheme) bool {
	for i := range ups {
		if ups[i].Scheme == sc {
			return true
		}
	}
	return false
}

// connectAuthority is the host:port the tunnel or request goes to.
func (s *session) connectAuthority() []byte {
	if s.kind == KindConnect {
		return s.target
	}
	return s.fwdAuthority
}

// dialFailed runs on the loop when every upstream of the list failed.
func (s *session) dialFailed(gen uint32, tried int, pe *proxystatus.Error) {
	if gen != s.gen || s.state != stateDialing {
		return
	}
	// The access line names the upstream that failed last.
	if ups := s.list.Upstreams(); tried < len(ups) {
		s.upHost = ups[tried].AppendHostPort(s.upHost[:0])
	}
	s.fail(pe)
}

// upLink is the gnet context of an upstream connection until its OnOpen
// attaches it to the session (or finds the session moved on).
type upLink struct {
	s    *session
	gen  uint32
	idx  int
	addr []byte // resolved socks5 target address (4 or 16 bytes), if any
}

// openUpstream runs in the upstream connection's OnOpen: it sends the first
// bytes of the handshake.
func (s *session) openUpstream(c gnet.Conn, l *upLink) ([]byte, gnet.Action) {
	if l.gen != s.gen || s.state != stateDialing || s.client == nil {
		c.SetContext(nil)
		return nil, gnet.Close
	}
	s.up = c
	c.SetContext(s)
	s.upIdx = l.idx
	u := &s.list.Upstreams()[l.idx]
	s.upHost = u.AppendHostPort(s.upHost[:0])
	s.setState(stateHandshake)
	s.hsStart = time.Now()
	s.deadline = s.hsStart.Add(s.e.cfg.ResponseHeaderTimeout).UnixNano()

	out := s.ls.scratch[:0]
	switch u.Scheme {
	case httpparse.SchemeSOCKS5, httpparse.SchemeSOCKS5H:
		host, port, _, _ := httpparse.SplitHostPort(s.connectAuthority(), 80)
		s.socks = &upstream.Socks5{User: u.User, Pass: u.Pass, HasAuth: u.HasAuth, Host: host, Port: port}
		if u.Scheme == httpparse.SchemeSOCKS5 && len(l.addr) > 0 {
			s.socks.Addr = addrFromSlice(l.addr)
		}
		var err error
		if out, err = s.socks.Start(out); err != nil {
			s.fail(upstream.Classify(err))
			return nil, gnet.None
		}
	default:
		if s.kind == KindConnect {
			out = upstream.AppendConnectLine(out, s.target, u.User, u.Pass, u.HasAuth)
			out = append(out, s.e2e...)
			out = append(out, "\r\n"...)
		} else {
			out = s.appendForwardHead(out, u)
		}
	}
	s.ls.scratch = out[:0]
	s.headIn += int64(len(out))
	// gnet copies what it cannot send at once, so scratch may be reused.
	_, _ = c.Write(out)
	if s.kind != KindConnect && u.Scheme != httpparse.SchemeSOCKS5 && u.Scheme != httpparse.SchemeSOCKS5H {
		s.afterForwardHeadSent()
	}
	return nil, gnet.None
}

// handshake reads the upstream's answer to CONNECT or SOCKS5.
func (s *session) handshake() {
	u := &s.list.Upstreams()[s.upIdx]
	if u.Scheme == httpparse.SchemeSOCKS5 || u.Scheme == httpparse.SchemeSOCKS5H {
		s.socksHandshake()
		return
	}
	if s.kind != KindConnect {
		s.forwardResponseHead()
		return
	}
	for s.state == stateHandshake && s.up != nil {
		buf, _ := s.up.Peek(-1)
		n, err := s.ls.resp.Parse(buf)
		if errors.Is(err, httpparse.ErrNeedMore) {
			if len(buf) > s.e.cfg.MaxHeaderBytes {
				s.handshakeFailed(proxystatus.New(proxystatus.HTTPResponseError, "upstream answer head too large"))
			}
			return
		}
		if err != nil {
			s.handshakeFailed(proxystatus.New(proxystatus.HTTPResponseError, "malformed answer from upstream"))
			return
		}
		st := s.ls.resp.Status
		switch {
		case st/100 == 1:
			_, _ = s.up.Discard(n) // interim answer: keep reading
			continue
		case st/100 == 2:
			s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), proxystatus.None)
			out := append(s.ls.scratch[:0], "HTTP/1.1 200 Connection established\r\n"...)
			for _, h := range s.ls.resp.Headers {
				// A 2xx answer to CONNECT has no body (RFC 9110 §9.3.6):
				// framing fields from the upstream would mislead clients.
				if h.Hop || h.Known == httpparse.KnownContentLength || h.Known == httpparse.KnownTransferEncoding {
					continue
				}
				out = append(out, h.Line.Bytes(buf)...)
				out = append(out, "\r\n"...)
			}
			out = append(out, "\r\n"...)
			s.ls.scratch = out[:0]
			_, _ = s.up.Discard(n)
			s.status = 200
			s.headOut = int64(len(out))
			_, _ = s.client.Write(out)
			s.startRelay()
		case st == 407:
			s.handshakeFailed(&proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Received: 407, Detail: "upstream proxy refused the credentials"})
		default:
			s.handshakeFailed(&proxystatus.Error{Type: proxystatus.DestinationUnavailable, Received: st, Detail: "upstream refused the CONNECT"})
		}
		return
	}
}

// handshakeFailed reports and answers a failed upstream handshake.
func (s *session) handshakeFailed(pe *proxystatus.Error) {
	s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), pe.Type)
	s.fail(pe)
}

// socksHandshake advances the SOCKS5 exchange.
func (s *session) socksHandshake() {
	for s.state == stateHandshake && s.up != nil {
		buf, _ := s.up.Peek(-1)
		n, out, done, err := s.socks.Feed(buf, s.ls.scratch[:0])
		if err != nil {
			s.handshakeFailed(upstream.Classify(err))
			return
		}
		if n == 0 {
			return
		}
		_, _ = s.up.Discard(n)
		if len(out) > 0 {
			s.headIn += int64(len(out))
			_, _ = s.up.Write(out)
		}
		if !done {
			continue
		}
		s.e.cfg.Observer.UpstreamHandshake(time.Since(s.hsStart), proxystatus.None)
		s.socks = nil
		if s.kind != KindConnect {
			out := s.appendForwardHead(s.ls.scratch[:0], nil)
			s.ls.scratch = out[:0]
			s.headIn += int64(len(out))
			_, _ = s.up.Write(out)
			s.afterForwardHeadSent()
			return
		}
		out = append(s.ls.scratch[:0], "HTTP/1.1 200 Connection established\r\n\r\n"...)
		s.status = 200
		s.headOut = int64(len(out))
		_, _ = s.client.Write(out)
		s.startRelay()
		return
	}
}

// startRelay turns the session into a tunnel between client and upstream.
func (s *session) startRelay() {
	s.setState(stateRelaying)
	s.lastActive = time.Now().UnixNano()
	s.deadline = s.lastActive + int64(s.e.cfg.TunnelIdleTimeout)
	// What only the handshake needed goes now: an idle tunnel keeps little.
	s.releaseList()
	s.socks, s.e2e, s.authSeen = nil, nil, nil
	paused := s.paused
	s.fwd = nil
	s.paused = false
	s.relay.Start(s.ls.poller, s.e.relay, s.client, s.up, paused)
	s.afterRelay()
}

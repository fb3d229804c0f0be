package engine

import (
	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
)

// Plain-HTTP forwarding (absolute-form and origin-form requests).

func (s *session) beginForward(buf []byte, n int) {
	s.fail(&proxystatus.Error{Type: proxystatus.HTTPRequestError, Status: 501, Detail: "plain HTTP forwarding is not built yet"})
}

func (s *session) forwardClientTraffic()                                      { _, _ = s.client.Discard(-1) }
func (s *session) forwardUpstreamTraffic()                                    { _, _ = s.up.Discard(-1) }
func (s *session) forwardExpire(now int64)                                    { s.closeClient(); s.closeUpstream() }
func (s *session) forwardClientClosed()                                       { s.closeUpstream() }
func (s *session) forwardUpstreamClosed(err error)                            { s.closeClient() }
func (s *session) appendForwardHead(dst []byte, u *httpparse.Upstream) []byte { return dst }
func (s *session) afterForwardHeadSent()                                      {}
func (s *session) forwardResponseHead()                                       {}

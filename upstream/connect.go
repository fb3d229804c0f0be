package upstream

import (
	"errors"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
)

// AppendConnectLine appends the first lines of a CONNECT request to an HTTP
// upstream: the request line and Host for authority ("host:port"), and
// Proxy-Authorization when hasAuth. The caller appends the client's
// end-to-end headers and the final CRLF.
func AppendConnectLine(dst, authority []byte, user, pass []byte, hasAuth bool) []byte {
	dst = append(dst, "CONNECT "...)
	dst = append(dst, authority...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, authority...)
	dst = append(dst, "\r\n"...)
	if hasAuth {
		dst = append(dst, "Proxy-Authorization: "...)
		dst = httpparse.AppendBasicAuth(dst, user, pass)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// Connect is the Handshake of a tunnel through an HTTP (or https) upstream:
// CONNECT with the client's end-to-end headers (vendor control headers
// reach the upstream), then the upstream's answer: 1xx skipped, 2xx opens
// the tunnel, 407 and other codes are errors carrying the received status.
// Set the fields, then Start.
type Connect struct {
	Upstream  *httpparse.Upstream // credentials for Proxy-Authorization
	Authority []byte              // host:port of the tunnel's target
	E2E       []byte              // the client's end-to-end header lines, CRLF-terminated
	// Resp parses the answer; the engine lends its loop's parser, which is
	// free between callbacks.
	Resp *httpparse.Response
	// MaxHead bounds the answer's head; a larger one is an error.
	MaxHead int
}

// Start appends the CONNECT request.
func (c *Connect) Start(send []byte) ([]byte, bool, error) {
	u := c.Upstream
	send = AppendConnectLine(send, c.Authority, u.User, u.Pass, u.HasAuth)
	send = append(send, c.E2E...)
	return append(send, "\r\n"...), false, nil
}

// Feed reads the upstream's answer.
func (c *Connect) Feed(in, send, reply []byte) (Step, error) {
	st := Step{Send: send, Reply: reply}
	for {
		n, err := c.Resp.Parse(in[st.N:])
		if errors.Is(err, httpparse.ErrNeedMore) {
			if c.MaxHead > 0 && len(in)-st.N > c.MaxHead {
				return st, proxystatus.New(proxystatus.HTTPResponseError, "upstream answer head too large")
			}
			return st, nil
		}
		if err != nil {
			return st, proxystatus.New(proxystatus.HTTPResponseError, "malformed answer from upstream")
		}
		code := c.Resp.Status
		switch {
		case code/100 == 1:
			st.N += n // interim answer: keep reading
			continue
		case code/100 == 2:
			st.Reply = AppendEstablished(st.Reply, c.Resp, in[st.N:])
			st.N += n
			st.Done = true
			return st, nil
		case code == 407:
			return st, &proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Received: 407, Detail: "upstream proxy refused the credentials"}
		default:
			return st, &proxystatus.Error{Type: proxystatus.DestinationUnavailable, Received: code, Detail: "upstream refused the CONNECT"}
		}
	}
}

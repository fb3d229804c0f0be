package upstream

import "github.com/proxyto/proxyto/httpparse"

// Handshake is the client side of an upstream proxy's protocol, from the
// first byte proxyto sends until the upstream carries the client's bytes: a
// CONNECT (Connect), a SOCKS5 exchange (Socks5), or the head of a forwarded
// plain-HTTP request (Forward, done at once: its answer is the response the
// engine streams). The engine drives it on an event loop: Start gives the
// first bytes to send; while not done, Feed consumes the upstream's bytes and
// gives what to send next and, once done, the head to answer the client with.
// Implementations keep no reference to the slices they are given and do not
// allocate; their errors are *proxystatus.Error values.
type Handshake interface {
	// Start appends the first bytes to send to send. done reports that the
	// handshake needs no answer.
	Start(send []byte) (out []byte, done bool, err error)
	// Feed consumes in, the upstream's bytes so far. It appends to send what
	// to write to the upstream next and, once done, to reply the head for
	// the client (a CONNECT's "200 Connection established").
	Feed(in, send, reply []byte) (Step, error)
}

// Step is what one Feed did.
type Step struct {
	// N is how many leading bytes of in were consumed. N == 0 with Done
	// false means more bytes are needed.
	N     int
	Send  []byte // the send given, with bytes for the upstream appended
	Reply []byte // the reply given, with the client's head appended once Done
	Done  bool   // the upstream now carries the client's bytes
}

// AppendEstablished appends the head proxyto answers a CONNECT with once the
// upstream opened the tunnel: "200 Connection established", then the
// upstream's own answer's end-to-end header lines when it sent one (vendors
// report the exit IP there), except its framing fields (resp, with buf the
// bytes it was parsed from; nil after SOCKS5). A 2xx answer to CONNECT has
// no body (RFC 9110 §9.3.6): Content-Length or Transfer-Encoding from the
// upstream would mislead the client.
func AppendEstablished(dst []byte, resp *httpparse.Response, buf []byte) []byte {
	dst = append(dst, "HTTP/1.1 200 Connection established\r\n"...)
	if resp != nil {
		for _, h := range resp.Headers {
			if h.Hop || h.Known == httpparse.KnownContentLength || h.Known == httpparse.KnownTransferEncoding {
				continue
			}
			dst = append(dst, h.Line.Bytes(buf)...)
			dst = append(dst, "\r\n"...)
		}
	}
	return append(dst, "\r\n"...)
}

// appendAuth appends the Proxy-Authorization line for u's credentials.
func appendAuth(dst []byte, u *httpparse.Upstream) []byte {
	dst = append(dst, "Proxy-Authorization: "...)
	dst = httpparse.AppendBasicAuth(dst, u.User, u.Pass)
	return append(dst, "\r\n"...)
}

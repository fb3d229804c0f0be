package upstream

import "github.com/proxyto/proxyto/httpparse"

// Forward is the Handshake of a plain-HTTP request: its head as the
// upstream must see it. To an HTTP (or https) upstream the request line keeps
// the absolute-form URL and Proxy-Authorization carries the upstream's
// credentials; over an open SOCKS5 tunnel the request goes in origin-form.
// Everything else is the client's: method, version, end-to-end header lines
// byte for byte. Done at once: the answer is the response the engine
// streams. Set the fields, then Start.
type Forward struct {
	Upstream *httpparse.Upstream
	Method   []byte
	URL      []byte // absolute-form target ("http://host/path?q")
	Path     []byte // origin-form target ("/path?q")
	Minor    uint8  // the client's HTTP minor version
	// AddHost, with Authority, adds a Host line: the client sent none (an
	// absolute-form request may omit it; an origin-form request needs one).
	AddHost   bool
	Authority []byte
	E2E       []byte // the client's end-to-end header lines, CRLF-terminated
}

// Start appends the request head.
func (f *Forward) Start(send []byte) ([]byte, bool, error) {
	socks := f.Upstream.Scheme.IsSOCKS()
	send = append(send, f.Method...)
	send = append(send, ' ')
	if socks {
		send = append(send, f.Path...)
	} else {
		send = append(send, f.URL...)
	}
	send = append(send, " HTTP/1."...)
	send = append(send, '0'+f.Minor)
	send = append(send, "\r\n"...)
	if f.AddHost {
		send = append(send, "Host: "...)
		send = append(send, f.Authority...)
		send = append(send, "\r\n"...)
	}
	if !socks && f.Upstream.HasAuth {
		send = appendAuth(send, f.Upstream)
	}
	send = append(send, f.E2E...) // with Connection: Upgrade when upgrading
	return append(send, "\r\n"...), true, nil
}

// Feed is never needed: Start reports done.
func (f *Forward) Feed(_, send, reply []byte) (Step, error) {
	return Step{Send: send, Reply: reply, Done: true}, nil
}

// Package proxystatus holds the one table that maps every error proxyto makes
// itself to an HTTP status and an RFC 9209 Proxy-Status error type, and renders
// that error as a response.
//
// It sits below engine, upstream and observability so that all three speak of
// the same closed set of error types without importing one another.
package proxystatus

import (
	"strconv"
)

// Type is an RFC 9209 Proxy-Status error type. The zero value means "no error".
// The set is closed so that metrics can pre-create one series per value.
type Type uint8

// The error types proxyto produces (docs/behaviour.md, "Errors").
const (
	None                    Type = iota // no error: the exchange succeeded
	HTTPRequestError                    // malformed request line, headers or X-Proxy-To; header section too large
	HTTPRequestDenied                   // proxyto's own authentication failed, or the upstream answered 407
	DestinationIPProhibited             // refused by proxyto's allow/deny rules
	ConnectionLimitReached              // client over its rate or connection limit
	DNSError                            // upstream name did not resolve
	ConnectionRefused                   // upstream refused the TCP connection
	ConnectionTerminated                // upstream reset or closed the connection early
	ConnectionTimeout                   // upstream did not accept the connection in time
	HTTPResponseTimeout                 // upstream did not answer in time
	DestinationUnavailable              // upstream answered CONNECT with a non-2xx status
	TLSProtocolError                    // TLS to an https upstream failed
	TLSCertificateError                 // the https upstream's certificate did not verify
	ProxyLoopDetected                   // the request would loop back into proxyto
	ProxyInternalResponse               // proxyto is draining for shutdown
	HTTPResponseError                   // the upstream's response was malformed (http_protocol_error)
	ProxyInternalError                  // a bug or resource failure inside proxyto
	numTypes
)

// NumTypes is the number of Type values, for sizing per-type tables.
const NumTypes = int(numTypes)

// row is one line of the error table.
type row struct {
	name   string // RFC 9209 token
	status int    // response status proxyto sends
}

// table is the single error→response map (docs/behaviour.md, "Errors").
var table = [numTypes]row{
	None:                    {"", 200},
	HTTPRequestError:        {"http_request_error", 400},
	HTTPRequestDenied:       {"http_request_denied", 502},
	DestinationIPProhibited: {"destination_ip_prohibited", 403},
	ConnectionLimitReached:  {"connection_limit_reached", 429},
	DNSError:                {"dns_error", 502},
	ConnectionRefused:       {"connection_refused", 502},
	ConnectionTerminated:    {"connection_terminated", 502},
	ConnectionTimeout:       {"connection_timeout", 504},
	HTTPResponseTimeout:     {"http_response_timeout", 504},
	DestinationUnavailable:  {"destination_unavailable", 502},
	TLSProtocolError:        {"tls_protocol_error", 502},
	TLSCertificateError:     {"tls_certificate_error", 502},
	ProxyLoopDetected:       {"proxy_loop_detected", 508},
	ProxyInternalResponse:   {"proxy_internal_response", 503},
	HTTPResponseError:       {"http_protocol_error", 502},
	ProxyInternalError:      {"proxy_internal_error", 500},
}

// String returns the RFC 9209 token, or "none".
func (t Type) String() string {
	if t == None {
		return "none"
	}
	if int(t) >= len(table) {
		return "proxy_internal_error"
	}
	return table[t].name
}

// Status returns the HTTP status proxyto answers with for t.
func (t Type) Status() int {
	if int(t) >= len(table) {
		return 500
	}
	return table[t].status
}

// Error is an error proxyto reports to the client. It is a value: build it with
// New and return it; the engine turns it into a response in exactly one place
// (AppendResponse).
type Error struct {
	Type Type
	// Status overrides Type.Status() when non-zero (431 for an oversized head,
	// 407 for proxyto's own authentication).
	Status int
	// Received is the upstream's status code when it answered with one that
	// proxyto refuses to pass on (RFC 9209 received-status); 0 when none.
	Received int
	// Detail is one human-readable line. It must never hold a credential or raw
	// request bytes.
	Detail string
}

// New returns an *Error of type t with the detail line.
func New(t Type, detail string) *Error { return &Error{Type: t, Detail: detail} }

// Error implements error.
func (e *Error) Error() string {
	if e.Detail == "" {
		return "proxyto: " + e.Type.String()
	}
	return "proxyto: " + e.Type.String() + ": " + e.Detail
}

// Code is the HTTP status to answer with.
func (e *Error) Code() int {
	if e.Status != 0 {
		return e.Status
	}
	return e.Type.Status()
}

// AppendResponse renders e as a complete HTTP/1.1 response with a Proxy-Status
// header, a text/plain one-line body and Connection: close. extra is appended to
// the header section verbatim (e.g. "Proxy-Authenticate: ...\r\n" or
// "Retry-After: 1\r\n") and must end in CRLF when non-empty.
func AppendResponse(dst []byte, e *Error, extra string) []byte {
	code := e.Code()
	body := e.Detail
	if body == "" {
		body = e.Type.String()
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason(code)...)
	dst = append(dst, "\r\nProxy-Status: proxyto; error="...)
	dst = append(dst, e.Type.String()...)
	if e.Received != 0 {
		dst = append(dst, "; received-status="...)
		dst = strconv.AppendInt(dst, int64(e.Received), 10)
	}
	dst = append(dst, "; details="...)
	dst = appendSFString(dst, body)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)+1), 10)
	dst = append(dst, "\r\nConnection: close\r\n"...)
	dst = append(dst, extra...)
	dst = append(dst, "\r\n"...)
	dst = append(dst, body...)
	dst = append(dst, '\n')
	return dst
}

// reason returns the reason phrase for the statuses proxyto generates.
func reason(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 407:
		return "Proxy Authentication Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 508:
		return "Loop Detected"
	}
	return "Error"
}

// appendSFString writes s as an RFC 8941 sf-string: printable ASCII only, with
// '"' and '\\' escaped; anything else becomes '?', so a hostile value can
// never break the header.
func appendSFString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c > 0x7e:
			dst = append(dst, '?')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

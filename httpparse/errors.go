package httpparse

import (
	"errors"
	"strconv"
)

// Errors returned by Request.Parse and Response.Parse. Every error but
// ErrNeedMore means the head is malformed: the engine answers 400 to a client
// (502 for an upstream's response) and closes the connection.
var (
	// ErrNeedMore occurs when buf holds a valid prefix of a head but not its
	// final empty line. The caller reads more bytes and parses again; once
	// len(buf) exceeds its header limit it answers 431 itself.
	ErrNeedMore = errors.New("proxyto: need more bytes")

	// ErrBadRequestLine occurs when the request line is not
	// "method SP request-target SP HTTP-version": an empty method, a missing
	// field (HTTP/0.9 style "GET /"), or a line that ends early.
	ErrBadRequestLine = errors.New("proxyto: malformed request line")

	// ErrBadMethod occurs when the method holds a byte that is not a tchar.
	ErrBadMethod = errors.New("proxyto: invalid method")

	// ErrBadTarget occurs when the request-target is empty, holds a control
	// byte, or does not fit its form: CONNECT needs authority-form host:port,
	// absolute-form needs "scheme://host[:port]" without userinfo.
	ErrBadTarget = errors.New("proxyto: invalid request target")

	// ErrBadVersion occurs when the version is not exactly HTTP/1.0 or
	// HTTP/1.1 (HTTP/0.9, HTTP/2.0, lower case, trailing bytes).
	ErrBadVersion = errors.New("proxyto: unsupported HTTP version")

	// ErrBadStatusLine occurs when a status line is not
	// "HTTP-version SP 3DIGIT SP reason-phrase" with a status of 100-999 and
	// a reason of field-value bytes.
	ErrBadStatusLine = errors.New("proxyto: malformed status line")

	// ErrBadHeader occurs when a field line has no colon, an empty name, a
	// non-tchar byte in its name (including whitespace before the colon,
	// RFC 9112 §5.1), or a control byte in its value (NUL, bare CR, ...).
	ErrBadHeader = errors.New("proxyto: malformed header line")

	// ErrObsFold occurs when a field line starts with SP or HTAB: obsolete
	// line folding, which RFC 9112 §5.2 lets a proxy reject.
	ErrObsFold = errors.New("proxyto: obsolete header line folding")

	// ErrTooManyHeaders occurs when a head has more than MaxHeaders field
	// lines.
	ErrTooManyHeaders = errors.New("proxyto: too many header lines")

	// ErrTooManyConnectionOptions occurs when the Connection fields of a
	// head list more than MaxConnectionOptions options.
	ErrTooManyConnectionOptions = errors.New("proxyto: too many Connection options")

	// ErrDuplicateHost occurs when a request has more than one Host field
	// (RFC 9112 §3.2).
	ErrDuplicateHost = errors.New("proxyto: more than one Host header")

	// ErrBadContentLength occurs when a Content-Length value is not a
	// non-empty run of decimal digits below 2^63 (a comma list is refused
	// too, as net/http does).
	ErrBadContentLength = errors.New("proxyto: invalid Content-Length")

	// ErrConflictingContentLength occurs when two Content-Length fields carry
	// different values. Repeated identical values are accepted.
	ErrConflictingContentLength = errors.New("proxyto: conflicting Content-Length headers")

	// ErrLengthAndChunked occurs when a message carries both
	// Transfer-Encoding and Content-Length: the classic request smuggling
	// shape that RFC 9112 §6.3 says ought to be handled as an error.
	ErrLengthAndChunked = errors.New("proxyto: both Transfer-Encoding and Content-Length")

	// ErrUnsupportedTransferEncoding occurs when
	//   - a request's Transfer-Encoding codings, over all its fields, do
	//     not end in exactly one "chunked" ("gzip", "chunked, gzip",
	//     "chunked, chunked" and an empty value are refused; "gzip, chunked"
	//     is accepted; RFC 9112 §6.1 says answer 400);
	//   - a response lists chunked twice or not last (a response whose
	//     codings simply lack chunked is accepted and read until close,
	//     RFC 9112 §6.3);
	//   - an HTTP/1.0 message carries Transfer-Encoding at all (RFC 9112
	//     §6.1: its framing is faulty).
	ErrUnsupportedTransferEncoding = errors.New("proxyto: unsupported Transfer-Encoding")
)

// Errors returned by ChunkScanner.Scan. Each means the chunked body is
// malformed and the connection must be closed: its framing is lost.
var (
	// ErrBadChunkLine occurs when a chunk-size line has no hex digits, more
	// than 16 of them or a size over 2^62, a byte other than BWS or ';'
	// after them, a control byte in its extension, or does not end in CRLF
	// (RFC 9112 errata 7633: no bare LF in chunked framing).
	ErrBadChunkLine = errors.New("proxyto: malformed chunk-size line")

	// ErrBadChunkEnd occurs when chunk data is not followed by CRLF (or LF).
	ErrBadChunkEnd = errors.New("proxyto: chunk data not followed by CRLF")

	// ErrChunkLineTooLong occurs when a chunk-size line (with its extensions)
	// exceeds MaxChunkLine bytes, or the trailer section exceeds
	// MaxTrailerBytes.
	ErrChunkLineTooLong = errors.New("proxyto: chunk extension or trailer too long")

	// ErrBadTrailer occurs when a trailer field line holds a control byte,
	// has no colon or an empty name, starts with whitespace, or does not end
	// in CRLF.
	ErrBadTrailer = errors.New("proxyto: malformed chunked trailer")
)

// Errors wrapped by *ProxyToError, returned by UpstreamList.Parse and
// Upstream.Parse for a malformed X-Proxy-To (docs/behaviour.md, "X-Proxy-To"; the engine answers 400).
// None of them, nor ProxyToError itself, ever holds bytes of the value.
var (
	// ErrProxyToEmpty occurs when the whole X-Proxy-To value is empty or
	// whitespace.
	ErrProxyToEmpty = errors.New("proxyto: empty X-Proxy-To")

	// ErrProxyToEmptyElement occurs when a failover list has an empty
	// element ("a:1,,b:2", "a:1,").
	ErrProxyToEmptyElement = errors.New("proxyto: empty X-Proxy-To list element")

	// ErrProxyToTooLong occurs when the value is longer than MaxProxyToLen.
	ErrProxyToTooLong = errors.New("proxyto: X-Proxy-To too long")

	// ErrProxyToTooMany occurs when the list has more than MaxUpstreams
	// entries.
	ErrProxyToTooMany = errors.New("proxyto: too many X-Proxy-To upstreams")

	// ErrProxyToScheme occurs when the scheme is not http, https, socks5 or
	// socks5h (case-insensitive), or "://" follows nothing.
	ErrProxyToScheme = errors.New("proxyto: unknown X-Proxy-To scheme")

	// ErrProxyToPath occurs when an entry has a path, query or fragment
	// ('/', '?' or '#' after the scheme).
	ErrProxyToPath = errors.New("proxyto: X-Proxy-To must not have a path, query or fragment")

	// ErrProxyToControl occurs when an entry holds a control byte, a space
	// or a non-ASCII byte, or when user or password decode to a control
	// byte.
	ErrProxyToControl = errors.New("proxyto: control character or space in X-Proxy-To")

	// ErrProxyToUserinfo occurs when user or password hold a byte that must
	// be percent-encoded (a second '@', '[', ...), or when the decoded user
	// holds ':' (it could not be sent in Basic credentials, RFC 7617).
	ErrProxyToUserinfo = errors.New("proxyto: invalid X-Proxy-To user or password")

	// ErrProxyToEscape occurs when a '%' in user or password is not followed
	// by two hex digits.
	ErrProxyToEscape = errors.New("proxyto: invalid percent escape in X-Proxy-To")

	// ErrProxyToHost occurs when the host is missing, is not a DNS name, a
	// dotted IPv4 address or a bracketed IPv6 address, or is an unbracketed
	// IPv6 address.
	ErrProxyToHost = errors.New("proxyto: invalid X-Proxy-To host")

	// ErrProxyToPort occurs when the port is empty after ':', holds a
	// non-digit, or is outside 1-65535.
	ErrProxyToPort = errors.New("proxyto: invalid X-Proxy-To port")
)

// ProxyToError is the error UpstreamList.Parse returns: which list element
// failed and why. Err is one of the ErrProxyTo* sentinels (match it with
// errors.Is); the message names the element index only, never its bytes,
// because they may hold a password.
type ProxyToError struct {
	Index int   // zero-based list element; 0 for whole-value errors
	Err   error // an ErrProxyTo* sentinel
}

// Error returns "proxyto: X-Proxy-To element N: <reason>".
func (e *ProxyToError) Error() string {
	return "proxyto: X-Proxy-To element " + strconv.Itoa(e.Index) + ": " + e.Err.Error()[len("proxyto: "):]
}

// Unwrap returns the sentinel.
func (e *ProxyToError) Unwrap() error { return e.Err }

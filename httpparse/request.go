package httpparse

// TargetForm is the form of a request-target (RFC 9112 §3.2).
type TargetForm uint8

// The request-target forms.
const (
	FormOrigin    TargetForm = iota // "/path?query" (needs Host)
	FormAbsolute                    // "scheme://authority/path?query"
	FormAuthority                   // "host:port", CONNECT only
	FormAsterisk                    // "*", OPTIONS
)

// Request is a parsed request head. All Spans index the buf given to Parse.
// The zero value is ready to use; a Request is reused across requests by
// calling Parse again (which resets it) and is not safe for concurrent use.
type Request struct {
	Method Span  // method token, case-sensitive
	Target Span  // request-target as sent
	Major  uint8 // always 1
	Minor  uint8 // 0 or 1

	Connect bool // method is exactly "CONNECT"
	Head    bool // method is exactly "HEAD"

	// Form classifies Target. For FormAbsolute, TargetScheme is the scheme,
	// TargetAuthority the host[:port] (validated, no userinfo) and
	// TargetPath the rest from the first '/' or '?' (empty when absent:
	// forward it as "/"). For FormAuthority TargetAuthority equals Target
	// and is a validated host:port. For other forms the three are empty.
	Form                          TargetForm
	TargetScheme, TargetAuthority Span
	TargetPath                    Span

	Host    Span // value of the Host field; empty if absent
	HasHost bool // a Host field was present (a second one is ErrDuplicateHost)

	XProxyTo      Span // value of the first X-Proxy-To field
	XProxyToCount int  // number of X-Proxy-To fields: the engine rejects > 1 (docs/behaviour.md, "X-Proxy-To")

	XProxySession      Span // value of the first X-Proxy-Session field (a route's sticky key)
	XProxySessionCount int  // number of X-Proxy-Session fields: the engine rejects > 1

	ProxyAuthorization Span // value of the first Proxy-Authorization field
	HasProxyAuth       bool // some Proxy-Authorization field was present

	// ContentLength is the Content-Length value, -1 when absent. A request
	// with neither Content-Length nor Chunked has no body (see HasBody).
	ContentLength int64
	Chunked       bool // Transfer-Encoding ends in chunked: scan the body with ChunkScanner

	// Connection options, from every Connection field, case-insensitively.
	// See WantsClose for the version defaults.
	Close, KeepAlive, Upgrade bool

	UpgradeValue Span // value of the first Upgrade field
	Expect100    bool // Expect: 100-continue

	// Headers holds every field line in arrival order. Parse reuses its
	// backing array, so after it has grown once parsing allocates nothing.
	Headers []Header

	HeadLen int // bytes of the head, final empty line included; what Parse returned
}

// TargetSchemeIs reports whether an absolute-form target's scheme is
// lower (a lower-case literal such as "http"), case-insensitively.
func (r *Request) TargetSchemeIs(buf []byte, lower string) bool {
	return r.Form == FormAbsolute && equalFoldLower(r.TargetScheme.Bytes(buf), lower)
}

// Reset clears r, keeping the Headers backing array.
func (r *Request) Reset() {
	*r = Request{Headers: r.Headers[:0], ContentLength: -1}
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// WantsClose reports whether the client connection must close after this
// exchange: "Connection: close", or HTTP/1.0 without "Connection: keep-alive".
func (r *Request) WantsClose() bool {
	return r.Close || r.Minor == 0 && !r.KeepAlive
}

// Parse parses the request head at the start of buf. On success it returns
// the head length (also in HeadLen): buf[n:] starts the body or the next
// request. It returns ErrNeedMore while the head is incomplete and another
// sentinel error as soon as the bytes seen are malformed. Empty lines before
// the request line are skipped (RFC 9112 §2.2) and counted in n.
//
// Parse checks syntax and framing only; whether a Host or an X-Proxy-To is
// required, and what the target may name, is the caller's policy. It does
// not allocate once Headers has the capacity it needs.
func (r *Request) Parse(buf []byte) (n int, err error) {
	r.Reset()
	if len(buf) > maxBuf {
		buf = buf[:maxBuf]
	}
	i := 0
	for { // RFC 9112 §2.2: ignore empty lines before the request line
		if i >= len(buf) {
			return 0, ErrNeedMore
		}
		if buf[i] == '\n' {
			i++
			continue
		}
		if buf[i] == '\r' {
			if i+1 >= len(buf) {
				return 0, ErrNeedMore
			}
			if buf[i+1] != '\n' {
				return 0, ErrBadRequestLine
			}
			i += 2
			continue
		}
		break
	}

	start := i
	for i < len(buf) && tokenTable[buf[i]] {
		i++
	}
	if i >= len(buf) {
		return 0, ErrNeedMore
	}
	if buf[i] != ' ' {
		if i == start || buf[i] == '\r' || buf[i] == '\n' {
			return 0, ErrBadRequestLine
		}
		return 0, ErrBadMethod
	}
	if i == start {
		return 0, ErrBadRequestLine
	}
	r.Method = span(start, i)
	i++

	start = i
	for i < len(buf) && targetTable[buf[i]] {
		i++
	}
	if i >= len(buf) {
		return 0, ErrNeedMore
	}
	if buf[i] != ' ' {
		if buf[i] == '\r' || buf[i] == '\n' {
			return 0, ErrBadRequestLine // HTTP/0.9 "GET /"
		}
		return 0, ErrBadTarget
	}
	if i == start {
		return 0, ErrBadTarget
	}
	r.Target = span(start, i)
	i++

	if i, err = parseVersion(buf, i, &r.Major, &r.Minor); err != nil {
		return 0, err
	}
	if i, err = lineEnd(buf, i, ErrBadVersion); err != nil {
		return 0, err
	}

	if r.Headers, i, err = scanFields(buf, i, r.Headers); err != nil {
		return 0, err
	}
	if err = r.interpret(buf); err != nil {
		return 0, err
	}
	r.HeadLen = i
	return i, nil
}

// interpret fills the dedicated fields from the method, target and headers.
func (r *Request) interpret(buf []byte) error {
	m := r.Method.Bytes(buf)
	r.Connect = string(m) == "CONNECT"
	r.Head = string(m) == "HEAD"
	if err := r.classifyTarget(buf); err != nil {
		return err
	}

	fr := framing{length: -1}
	var cf connFlags
	for i := range r.Headers {
		h := &r.Headers[i]
		v := h.Value.Bytes(buf)
		switch h.Known {
		case KnownHost:
			if r.HasHost {
				return ErrDuplicateHost
			}
			r.Host, r.HasHost = h.Value, true
		case KnownXProxyTo:
			if r.XProxyToCount == 0 {
				r.XProxyTo = h.Value
			}
			r.XProxyToCount++
		case KnownXProxySession:
			if r.XProxySessionCount == 0 {
				r.XProxySession = h.Value
			}
			r.XProxySessionCount++
		case KnownProxyAuthorization:
			if !r.HasProxyAuth {
				r.ProxyAuthorization, r.HasProxyAuth = h.Value, true
			}
		case KnownContentLength:
			if err := fr.addLength(v); err != nil {
				return err
			}
		case KnownTransferEncoding:
			fr.addCodings(v)
		case KnownConnection:
			cf.add(v)
		case KnownUpgrade:
			if r.UpgradeValue.Len() == 0 {
				r.UpgradeValue = h.Value
			}
		case KnownExpect:
			if equalFoldLower(v, "100-continue") {
				r.Expect100 = true
			}
		}
	}
	if cf.options > MaxConnectionOptions {
		return ErrTooManyConnectionOptions
	}
	r.Close, r.KeepAlive, r.Upgrade = cf.close, cf.keepAlive, cf.upgrade

	r.ContentLength = fr.length
	if fr.hasTE {
		switch {
		case fr.length >= 0:
			return ErrLengthAndChunked
		case r.Minor == 0 || !fr.chunkedFinal():
			// RFC 9112 §6.1: chunked must be final in a request, and
			// Transfer-Encoding in HTTP/1.0 means faulty framing.
			return ErrUnsupportedTransferEncoding
		}
		r.Chunked = true
	}

	markHop(buf, r.Headers)
	return nil
}

// classifyTarget sets Form and the target sub-spans, validating CONNECT's
// authority-form and absolute-form's scheme and authority.
func (r *Request) classifyTarget(buf []byte) error {
	t := r.Target.Bytes(buf)
	base := int(r.Target.Start)
	if r.Connect {
		if _, _, _, ok := SplitHostPort(t, 0); !ok {
			return ErrBadTarget
		}
		r.Form, r.TargetAuthority = FormAuthority, r.Target
		return nil
	}
	switch {
	case t[0] == '/':
		r.Form = FormOrigin
		return nil
	case len(t) == 1 && t[0] == '*':
		r.Form = FormAsterisk
		return nil
	}
	// absolute-form: scheme "://" authority [ "/" or "?" ... ]
	i := 0
	for i < len(t) && isSchemeByte(t[i], i == 0) {
		i++
	}
	if i == 0 || len(t)-i < 3 || string(t[i:i+3]) != "://" {
		return ErrBadTarget
	}
	r.TargetScheme = span(base, base+i)
	i += 3
	aStart := i
	for i < len(t) && t[i] != '/' && t[i] != '?' && t[i] != '#' {
		i++
	}
	if _, _, _, ok := SplitHostPort(t[aStart:i], 80); !ok {
		return ErrBadTarget // empty, userinfo (RFC 9110 §4.2.4), bad host or port
	}
	if i < len(t) && t[i] == '#' {
		return ErrBadTarget // a fragment is never part of a request-target
	}
	r.Form = FormAbsolute
	r.TargetAuthority = span(base+aStart, base+i)
	r.TargetPath = span(base+i, base+len(t))
	return nil
}

// isSchemeByte reports whether c may appear in a URI scheme (RFC 3986 §3.1).
func isSchemeByte(c byte, first bool) bool {
	if 'a' <= lower(c) && lower(c) <= 'z' {
		return true
	}
	return !first && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')
}

// AppendEndToEnd appends to dst, as "line\r\n" each, the exact bytes of every
// header whose Hop is false, in arrival order with case and duplicates kept.
// buf must be the buffer Parse parsed. With keepUpgrade (pass r.Upgrade when
// the engine relays an upgrade) the Upgrade lines are kept too, followed by
// "Connection: Upgrade\r\n"; with skipHost the
// Host line is left out (the engine writes its own for CONNECT). It does not
// allocate when dst has room.
func (r *Request) AppendEndToEnd(dst, buf []byte, keepUpgrade, skipHost bool) []byte {
	return appendEndToEnd(dst, buf, r.Headers, keepUpgrade, skipHost)
}

// parseVersion parses "HTTP/1.0" or "HTTP/1.1" at buf[i:], byte by byte so
// that a wrong byte is reported before the line is complete.
func parseVersion(buf []byte, i int, major, minor *uint8) (int, error) {
	const v = "HTTP/1."
	for k := 0; k < len(v); k++ {
		if i+k >= len(buf) {
			return 0, ErrNeedMore
		}
		if buf[i+k] != v[k] {
			return 0, ErrBadVersion
		}
	}
	i += len(v)
	if i >= len(buf) {
		return 0, ErrNeedMore
	}
	if buf[i] != '0' && buf[i] != '1' {
		return 0, ErrBadVersion
	}
	*major, *minor = 1, buf[i]-'0'
	return i + 1, nil
}

// lineEnd consumes the CRLF or LF at buf[i:], or reports bad.
func lineEnd(buf []byte, i int, bad error) (int, error) {
	if i >= len(buf) {
		return 0, ErrNeedMore
	}
	switch buf[i] {
	case '\n':
		return i + 1, nil
	case '\r':
		if i+1 >= len(buf) {
			return 0, ErrNeedMore
		}
		if buf[i+1] == '\n' {
			return i + 2, nil
		}
	}
	return 0, bad
}

package httpparse

import "math"

// MaxHeaders caps the field lines of one head; one more is ErrTooManyHeaders.
const MaxHeaders = 256

// maxBuf bounds the bytes Parse looks at so that every offset fits a Span.
// The engine's header limit (64 KiB by default) is far below it.
const maxBuf = 1<<31 - 1

// Span is a half-open byte range [Start, End) of the buffer a head was parsed
// from. The zero Span is empty. A Span is only meaningful together with that
// buffer, and only until the caller overwrites or discards it.
type Span struct{ Start, End int32 }

// Bytes returns buf[s.Start:s.End]: a view, not a copy.
func (s Span) Bytes(buf []byte) []byte { return buf[s.Start:s.End:s.End] }

// Len returns the length of the span in bytes.
func (s Span) Len() int { return int(s.End - s.Start) }

func span(start, end int) Span { return Span{int32(start), int32(end)} }

// Known identifies the header fields proxyto acts on. Every other field is
// KnownOther.
type Known uint8

// The fields proxyto recognises, matched case-insensitively.
const (
	KnownOther              Known = iota // any other field
	KnownHost                            // Host
	KnownXProxyTo                        // X-Proxy-To (docs/behaviour.md, "X-Proxy-To")
	KnownXProxySession                   // X-Proxy-Session: a route's sticky key (docs/routes.md)
	KnownProxyAuthorization              // Proxy-Authorization
	KnownProxyAuthenticate               // Proxy-Authenticate
	KnownConnection                      // Connection
	KnownProxyConnection                 // Proxy-Connection (non-standard, sent by old clients)
	KnownKeepAlive                       // Keep-Alive
	KnownTE                              // TE
	KnownTrailer                         // Trailer
	KnownTransferEncoding                // Transfer-Encoding
	KnownUpgrade                         // Upgrade
	KnownContentLength                   // Content-Length
	KnownExpect                          // Expect
	numKnown
)

// Header is one field line of a parsed head, as offsets into the parsed
// buffer.
type Header struct {
	Name  Span  // field name, as sent
	Value Span  // field value without leading and trailing SP/HTAB
	Line  Span  // the whole line without its CRLF or LF: re-emitted verbatim
	Known Known // which recognised field this is, or KnownOther
	Hop   bool  // hop-by-hop: not forwarded by AppendEndToEnd (see markHop)
}

// fixedHop is the one hop-by-hop table (RFC 9110 §7.6.1; docs/behaviour.md, "Talking to the upstream"). A field
// marked here is never forwarded; markHop adds the fields that Connection
// names.
//
// Transfer-Encoding is absent on purpose: proxyto keeps framing (docs/behaviour.md, "Talking to the upstream"), a
// chunked body is streamed through still chunked, so the field that says so
// must go with it.
var fixedHop = [numKnown]bool{
	KnownConnection:      true,
	KnownProxyConnection: true, // non-standard, but never meant for the next hop
	KnownKeepAlive:       true,
	KnownTE:              true, // canonicalised "Te" by net/http; matched case-insensitively here
	KnownTrailer:         true, // not "Trailers": the erratum reverseproxy.go comments on
	KnownUpgrade:         true, // re-emitted by AppendEndToEnd only when keepUpgrade
	// The client's credentials for proxyto, and the upstream's challenge
	// for proxyto: both are proxyto's own business.
	KnownProxyAuthorization: true,
	KnownProxyAuthenticate:  true,
	KnownXProxyTo:           true, // removed before anything goes upstream (docs/behaviour.md)
	KnownXProxySession:      true, // likewise: the sticky key is proxyto's, never the upstream's or the origin's
}

// neverHop lists the fields a Connection token cannot remove. Host, and the
// two framing fields, decide how the next hop routes the message and where its
// body ends; letting "Connection: Content-Length" strip them would let a
// client make proxyto forward a body the upstream delimits differently than
// proxyto did (request smuggling), or drop the Host an origin-form request
// needs.
var neverHop = [numKnown]bool{
	KnownHost:             true,
	KnownContentLength:    true,
	KnownTransferEncoding: true,
}

// markHop sets Hop on every header that must not be forwarded: first those
// named by a token of any Connection field, then the fixedHop list.
func markHop(buf []byte, hs []Header) {
	for i := range hs {
		if hs[i].Known != KnownConnection {
			continue
		}
		v := hs[i].Value.Bytes(buf)
		for len(v) > 0 {
			var tok []byte
			tok, v = nextListElem(v)
			if len(tok) == 0 {
				continue
			}
			for j := range hs {
				if !hs[j].Hop && !neverHop[hs[j].Known] && equalFold(hs[j].Name.Bytes(buf), tok) {
					hs[j].Hop = true
				}
			}
		}
	}
	for i := range hs {
		if fixedHop[hs[i].Known] {
			hs[i].Hop = true
		}
	}
}

// appendEndToEnd appends every non-hop header line + CRLF in arrival order.
// With keepUpgrade, Upgrade lines are kept too, followed by one
// "Connection: Upgrade" (RFC 9110 §7.8: a sender of Upgrade must send the
// upgrade connection option; the client's own Connection line is hop-by-hop
// and may carry other options).
func appendEndToEnd(dst, buf []byte, hs []Header, keepUpgrade, skipHost bool) []byte {
	upgraded := false
	for i := range hs {
		h := &hs[i]
		if h.Hop {
			if !keepUpgrade || h.Known != KnownUpgrade {
				continue
			}
			upgraded = true
		} else if skipHost && h.Known == KnownHost {
			continue
		}
		dst = append(dst, buf[h.Line.Start:h.Line.End]...)
		dst = append(dst, '\r', '\n')
	}
	if upgraded {
		dst = append(dst, "Connection: Upgrade\r\n"...)
	}
	return dst
}

// scanFields parses field lines from buf[i:] up to and including the empty
// line that ends the head, appending them to hs. It returns the offset just
// past that empty line. Bytes are validated as they are met, so a malformed
// line is reported even while the head is still incomplete.
func scanFields(buf []byte, i int, hs []Header) ([]Header, int, error) {
	for {
		if i >= len(buf) {
			return hs, 0, ErrNeedMore
		}
		switch buf[i] {
		case '\n':
			return hs, i + 1, nil
		case '\r':
			if i+1 >= len(buf) {
				return hs, 0, ErrNeedMore
			}
			if buf[i+1] != '\n' {
				return hs, 0, ErrBadHeader
			}
			return hs, i + 2, nil
		case ' ', '\t':
			return hs, 0, ErrObsFold
		}
		start := i
		for i < len(buf) && tokenTable[buf[i]] {
			i++
		}
		if i >= len(buf) {
			return hs, 0, ErrNeedMore
		}
		if buf[i] != ':' || i == start {
			return hs, 0, ErrBadHeader
		}
		nameEnd := i
		i++
		for i < len(buf) && (buf[i] == ' ' || buf[i] == '\t') {
			i++
		}
		vStart := i
		for i < len(buf) && valueTable[buf[i]] {
			i++
		}
		if i >= len(buf) {
			return hs, 0, ErrNeedMore
		}
		lineEnd := i
		switch buf[i] {
		case '\n':
			i++
		case '\r':
			if i+1 >= len(buf) {
				return hs, 0, ErrNeedMore
			}
			if buf[i+1] != '\n' {
				return hs, 0, ErrBadHeader // bare CR
			}
			i += 2
		default:
			return hs, 0, ErrBadHeader // NUL, other CTL, DEL
		}
		vEnd := lineEnd
		for vEnd > vStart && (buf[vEnd-1] == ' ' || buf[vEnd-1] == '\t') {
			vEnd--
		}
		if len(hs) == MaxHeaders {
			return hs, 0, ErrTooManyHeaders
		}
		name := buf[start:nameEnd]
		hs = append(hs, Header{
			Name:  span(start, nameEnd),
			Value: span(vStart, vEnd),
			Line:  span(start, lineEnd),
			Known: lookupKnown(name),
		})
	}
}

// lookupKnown classifies a field name, case-insensitively.
func lookupKnown(name []byte) Known {
	switch len(name) {
	case 2:
		if equalFoldLower(name, "te") {
			return KnownTE
		}
	case 4:
		if equalFoldLower(name, "host") {
			return KnownHost
		}
	case 6:
		if equalFoldLower(name, "expect") {
			return KnownExpect
		}
	case 7:
		if equalFoldLower(name, "upgrade") {
			return KnownUpgrade
		}
		if equalFoldLower(name, "trailer") {
			return KnownTrailer
		}
	case 10:
		if equalFoldLower(name, "connection") {
			return KnownConnection
		}
		if equalFoldLower(name, "keep-alive") {
			return KnownKeepAlive
		}
		if equalFoldLower(name, "x-proxy-to") {
			return KnownXProxyTo
		}
	case 14:
		if equalFoldLower(name, "content-length") {
			return KnownContentLength
		}
	case 15:
		if equalFoldLower(name, "x-proxy-session") {
			return KnownXProxySession
		}
	case 16:
		if equalFoldLower(name, "proxy-connection") {
			return KnownProxyConnection
		}
	case 17:
		if equalFoldLower(name, "transfer-encoding") {
			return KnownTransferEncoding
		}
	case 18:
		if equalFoldLower(name, "proxy-authenticate") {
			return KnownProxyAuthenticate
		}
	case 19:
		if equalFoldLower(name, "proxy-authorization") {
			return KnownProxyAuthorization
		}
	}
	return KnownOther
}

// MaxConnectionOptions caps the non-empty options listed across a head's
// Connection fields; one more is ErrTooManyConnectionOptions. Real clients
// send one to three. The cap bounds markHop, which compares every option with
// every field name, to MaxConnectionOptions*MaxHeaders comparisons.
const MaxConnectionOptions = 32

// connFlags are the Connection options proxyto acts on.
type connFlags struct {
	close, keepAlive, upgrade bool
	options                   int // non-empty options seen
}

// add records the options of one Connection field value.
func (f *connFlags) add(v []byte) {
	for len(v) > 0 {
		var tok []byte
		tok, v = nextListElem(v)
		if len(tok) > 0 {
			f.options++
		}
		switch {
		case equalFoldLower(tok, "close"):
			f.close = true
		case equalFoldLower(tok, "keep-alive"):
			f.keepAlive = true
		case equalFoldLower(tok, "upgrade"):
			f.upgrade = true
		}
	}
}

// framing accumulates Content-Length and Transfer-Encoding across fields.
type framing struct {
	length     int64 // -1 until a Content-Length is seen
	hasTE      bool  // some Transfer-Encoding field was seen
	chunked    int   // how many "chunked" codings were listed
	lastCoding bool  // the last listed coding was "chunked"
	codings    int   // non-empty codings listed
}

// addLength records one Content-Length value.
func (f *framing) addLength(v []byte) error {
	n, ok := parseLength(v)
	if !ok {
		return ErrBadContentLength
	}
	if f.length >= 0 && f.length != n {
		return ErrConflictingContentLength
	}
	f.length = n
	return nil
}

// addCodings records the codings of one Transfer-Encoding value.
func (f *framing) addCodings(v []byte) {
	f.hasTE = true
	for len(v) > 0 {
		var c []byte
		c, v = nextListElem(v)
		if len(c) == 0 {
			continue
		}
		f.codings++
		f.lastCoding = equalFoldLower(c, "chunked")
		if f.lastCoding {
			f.chunked++
		}
	}
}

// chunkedFinal reports whether the codings end in exactly one chunked.
func (f *framing) chunkedFinal() bool { return f.chunked == 1 && f.lastCoding }

// parseLength parses a Content-Length value: 1*DIGIT below 2^63, as
// net/http does (leading zeros allowed).
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// nextListElem splits the first element off a comma-separated list
// (RFC 9110 §5.6.1) and trims its OWS. Empty elements come back empty.
func nextListElem(v []byte) (elem, rest []byte) {
	elem = v
	for i, c := range v {
		if c == ',' {
			elem, rest = v[:i], v[i+1:]
			break
		}
	}
	return trimOWS(elem), rest
}

// trimOWS trims leading and trailing SP and HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// lower maps ASCII upper case to lower case and leaves every other byte.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold reports whether a and b are equal under ASCII case folding.
func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// equalFoldLower is equalFold against a lower-case literal.
func equalFoldLower(a []byte, lit string) bool {
	if len(a) != len(lit) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lit[i] {
			return false
		}
	}
	return true
}

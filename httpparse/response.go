package httpparse

// Response is a parsed response head (an upstream's answer). All Spans index
// the buf given to Parse. The zero value is ready to use; Parse resets it.
// Not safe for concurrent use.
type Response struct {
	Major  uint8 // always 1
	Minor  uint8 // 0 or 1
	Status int   // 100-999
	Reason Span  // reason-phrase, possibly empty

	// ContentLength is the Content-Length value, -1 when absent. With
	// neither ContentLength nor Chunked the body runs until the upstream
	// closes (unless NoBody): see UntilClose.
	ContentLength int64
	// Chunked is set when Transfer-Encoding ends in exactly one chunked.
	// Other codings leave it false and the body runs until close
	// (RFC 9112 §6.3).
	Chunked bool
	// Connection options from every Connection field. See WantsClose.
	Close, KeepAlive, Upgrade bool

	// Headers holds every field line in arrival order; its backing array
	// is reused.
	Headers []Header

	HeadLen int // bytes of the head, final empty line included
}

// Reset clears r, keeping the Headers backing array.
func (r *Response) Reset() {
	*r = Response{Headers: r.Headers[:0], ContentLength: -1}
}

// NoBody reports whether the response has no body whatever its headers say:
// an answer to HEAD (reqHead), 1xx, 204 or 304 (RFC 9112 §6.3). A 2xx answer
// to CONNECT has none either; the caller knows when that applies.
func (r *Response) NoBody(reqHead bool) bool {
	return reqHead || r.Status/100 == 1 || r.Status == 204 || r.Status == 304
}

// UntilClose reports whether the body (when NoBody is false) is delimited
// by the upstream closing the connection.
func (r *Response) UntilClose() bool { return !r.Chunked && r.ContentLength < 0 }

// WantsClose reports whether the upstream connection cannot be reused after
// this response: "Connection: close", HTTP/1.0 without keep-alive, or a
// body delimited by close. reqHead is as for NoBody.
func (r *Response) WantsClose(reqHead bool) bool {
	return r.Close || r.Minor == 0 && !r.KeepAlive || !r.NoBody(reqHead) && r.UntilClose()
}

// Parse parses the response head at the start of buf, with the same
// contract as Request.Parse: n is the head length, ErrNeedMore asks for more
// bytes, any other error is final. It does not allocate once Headers has
// grown.
func (r *Response) Parse(buf []byte) (n int, err error) {
	r.Reset()
	if len(buf) > maxBuf {
		buf = buf[:maxBuf]
	}
	i, err := parseVersion(buf, 0, &r.Major, &r.Minor)
	if err != nil {
		if err == ErrBadVersion {
			err = ErrBadStatusLine
		}
		return 0, err
	}
	// SP 3DIGIT
	for k := 0; k < 4; k++ {
		if i+k >= len(buf) {
			return 0, ErrNeedMore
		}
		c := buf[i+k]
		if k == 0 && c != ' ' || k > 0 && (c < '0' || c > '9') || k == 1 && c == '0' {
			return 0, ErrBadStatusLine
		}
		if k > 0 {
			r.Status = r.Status*10 + int(c-'0')
		}
	}
	i += 4
	// [ SP reason-phrase ] CRLF; net/http accepts a missing SP, so do we.
	if i >= len(buf) {
		return 0, ErrNeedMore
	}
	if buf[i] == ' ' {
		i++
		start := i
		for i < len(buf) && valueTable[buf[i]] {
			i++
		}
		r.Reason = span(start, i)
	}
	if i, err = lineEnd(buf, i, ErrBadStatusLine); err != nil {
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

// interpret fills the framing and connection fields from the headers.
func (r *Response) interpret(buf []byte) error {
	fr := framing{length: -1}
	var cf connFlags
	for i := range r.Headers {
		h := &r.Headers[i]
		switch h.Known {
		case KnownContentLength:
			if err := fr.addLength(h.Value.Bytes(buf)); err != nil {
				return err
			}
		case KnownTransferEncoding:
			fr.addCodings(h.Value.Bytes(buf))
		case KnownConnection:
			cf.add(h.Value.Bytes(buf))
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
		case r.Minor == 0 || fr.chunked > 1 || fr.chunked == 1 && !fr.lastCoding:
			// HTTP/1.0 with Transfer-Encoding is faulty framing
			// (RFC 9112 §6.1); chunked twice, or not last, cannot be
			// forwarded consistently.
			return ErrUnsupportedTransferEncoding
		}
		// Final chunked: chunked. Otherwise read until close.
		r.Chunked = fr.chunked == 1
	}
	markHop(buf, r.Headers)
	return nil
}

// AppendEndToEnd appends every header whose Hop is false as "line\r\n", in
// arrival order, byte for byte; with keepUpgrade (a 101 being relayed) the
// Upgrade lines too, followed by "Connection: Upgrade\r\n". buf must be the
// buffer Parse parsed. It does not allocate when dst has room.
func (r *Response) AppendEndToEnd(dst, buf []byte, keepUpgrade bool) []byte {
	return appendEndToEnd(dst, buf, r.Headers, keepUpgrade, false)
}

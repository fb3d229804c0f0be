// Package compression gzips plain-HTTP response bodies on their way to the
// client (--compress): which responses, how their header changes, and a
// streaming encoder with bounded memory.
//
//	request head  → AcceptsGzip(req, buf)             keep the bool
//	response head → Decide(accepts, isHead, resp, buf) == Compress?
//	              → Pool.Get(framing)                  nil: at the bound, send identity
//	              → AppendHeader(dst, resp, buf, framing)
//	body bytes    → Encoder.Append(dst, data)          data only: no upstream framing
//	batch end     → Encoder.Flush(dst)                 what is compressed so far leaves
//	body end      → Encoder.Close(dst)                 gzip trailer, last chunk; back to the pool
//
// Every function here is pure over the parsed heads (httpparse) and the
// bytes given; nothing does I/O or keeps state between responses except the
// pooled encoders. Nothing allocates on the way through once the pool is warm.
package compression

import "github.com/proxyto/proxyto/httpparse"

// MinLength is the smallest Content-Length worth compressing: below it the
// gzip header and trailer (18 bytes) and the chunk framing eat the gain.
// A body of unknown length is always a candidate.
const MinLength = 1024

// Reason is the verdict of Decide: Compress, or the first rule that refused.
// A closed set, fit for a metric label.
type Reason uint8

// The verdicts, in the order Decide checks the rules.
const (
	Compress       Reason = iota // every rule allows it
	NotAccepted                  // the client's Accept-Encoding does not allow gzip
	HeadRequest                  // the request was HEAD: no body
	NoBody                       // 1xx, 204, 304: no body
	Partial                      // 206: a byte range of the representation
	AlreadyEncoded               // the response has a Content-Encoding
	TransferCoded                // Transfer-Encoding lists a coding other than chunked
	NotText                      // Content-Type missing or not text-like
	NoTransform                  // Cache-Control: no-transform
	TooSmall                     // Content-Length below MinLength
	// Busy is not Decide's: every rule allowed it, but the Pool was at its
	// bound, so the response went as it was (the engine counts it).
	Busy
	NumReasons
)

var reasonNames = [NumReasons]string{
	Compress:       "compress",
	NotAccepted:    "not_accepted",
	HeadRequest:    "head",
	NoBody:         "no_body",
	Partial:        "partial",
	AlreadyEncoded: "encoded",
	TransferCoded:  "transfer_coded",
	NotText:        "not_text",
	NoTransform:    "no_transform",
	TooSmall:       "too_small",
	Busy:           "busy",
}

// String returns the verdict's label value.
func (r Reason) String() string {
	if r >= NumReasons {
		return "unknown"
	}
	return reasonNames[r]
}

// AcceptsGzip reports whether the request's Accept-Encoding fields allow a
// gzip-coded response (RFC 9110 §12.5.3): a "gzip" (or "x-gzip") element
// with a non-zero weight, or, when neither is listed, a "*" with a non-zero
// weight. "gzip;q=0" refuses even beside "*"; a weight that does not parse
// counts as zero; no Accept-Encoding field at all refuses (the client did
// not say it can decode anything). buf is the buffer req was parsed from.
// Call it while the request head is at hand and keep the result.
func AcceptsGzip(req *httpparse.Request, buf []byte) bool {
	gzipSeen, gzipRefused, star := false, false, false
	for i := range req.Headers {
		h := &req.Headers[i]
		if fieldOf(h.Name.Bytes(buf)) != fAcceptEncoding {
			continue
		}
		for v := h.Value.Bytes(buf); len(v) > 0; {
			var elem []byte
			elem, v = httpparse.NextListElem(v)
			coding, params := cutParam(elem)
			q := weight(params)
			switch {
			case httpparse.EqualFoldLower(coding, "gzip"), httpparse.EqualFoldLower(coding, "x-gzip"):
				gzipSeen = true
				gzipRefused = gzipRefused || !q
			case len(coding) == 1 && coding[0] == '*':
				star = star || q
			}
		}
	}
	if gzipSeen {
		return !gzipRefused
	}
	return star
}

// Decide applies the response-side rules to a response head (resp, parsed
// from buf) for a request whose AcceptsGzip result was accepts and whose
// method was HEAD when isHead. It is only for plain-HTTP exchanges: never a
// CONNECT tunnel or an upgraded connection.
func Decide(accepts, isHead bool, resp *httpparse.Response, buf []byte) Reason {
	switch {
	case !accepts:
		return NotAccepted
	case isHead:
		return HeadRequest
	case resp.NoBody(false):
		return NoBody
	case resp.Status == 206:
		return Partial
	}
	text := false
	for i := range resp.Headers {
		h := &resp.Headers[i]
		if h.Hop {
			continue
		}
		v := h.Value.Bytes(buf)
		switch h.Known {
		case httpparse.KnownTransferEncoding:
			if !onlyChunked(v) {
				return TransferCoded
			}
			continue
		case httpparse.KnownOther:
		default:
			continue
		}
		switch fieldOf(h.Name.Bytes(buf)) {
		case fContentEncoding:
			return AlreadyEncoded
		case fContentType:
			text = text || textLike(v)
		case fCacheControl:
			if hasToken(v, "no-transform") {
				return NoTransform
			}
		}
	}
	switch {
	case !text:
		return NotText
	case !resp.Chunked && resp.ContentLength >= 0 && resp.ContentLength < MinLength:
		return TooSmall
	}
	return Compress
}

// textLike reports whether a Content-Type value names a text-like media
// type: text/*, or one whose type/subtype mentions json, javascript or xml
// (application/json, application/ld+json, application/javascript,
// application/xml, image/svg+xml, application/rss+xml, ...).
func textLike(v []byte) bool {
	mt, _ := cutParam(v)
	if len(mt) >= 5 && httpparse.EqualFoldLower(mt[:5], "text/") {
		return true
	}
	return containsFold(mt, "json") || containsFold(mt, "javascript") || containsFold(mt, "xml")
}

// onlyChunked reports whether a Transfer-Encoding value lists nothing but
// chunked: another transfer coding would have to be undone before the body
// could be compressed, which proxyto does not do.
func onlyChunked(v []byte) bool {
	for len(v) > 0 {
		var c []byte
		c, v = httpparse.NextListElem(v)
		if len(c) > 0 && !httpparse.EqualFoldLower(c, "chunked") {
			return false
		}
	}
	return true
}

// hasToken reports whether a comma-separated directive list (Cache-Control,
// Vary) holds the directive tok (lower case), ignoring any "=value".
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var d []byte
		d, v = httpparse.NextListElem(v)
		for i, c := range d {
			if c == '=' {
				d = httpparse.TrimOWS(d[:i])
				break
			}
		}
		if httpparse.EqualFoldLower(d, tok) {
			return true
		}
	}
	return false
}

// weight reports whether a coding's parameters leave it a non-zero weight:
// no q parameter, or a q of 0.001 to 1. "q=0", "q=0.0" ... and values that
// are not a qvalue (RFC 9110 §12.4.2) count as zero.
func weight(params []byte) bool {
	for len(params) > 0 {
		var p []byte
		p, params = cutParam(params)
		if len(p) < 2 || p[0]|0x20 != 'q' || p[1] != '=' {
			continue
		}
		q := p[2:]
		if len(q) == 0 || len(q) > 5 {
			return false
		}
		switch q[0] {
		case '1':
			return len(q) == 1 || q[1] == '.' && allIn(q[2:], '0', '0')
		case '0':
			if len(q) == 1 {
				return false
			}
			if q[1] != '.' || !allIn(q[2:], '0', '9') {
				return false
			}
			return !allIn(q[2:], '0', '0')
		}
		return false
	}
	return true
}

// allIn reports whether every byte of b lies in [lo, hi].
func allIn(b []byte, lo, hi byte) bool {
	for _, c := range b {
		if c < lo || c > hi {
			return false
		}
	}
	return true
}

package compression

import "github.com/proxyto/proxyto/httpparse"

// Framing is how a compressed body is delimited for the client: its length
// is not known until the end, so it cannot keep a Content-Length.
type Framing uint8

// The framings.
const (
	Chunked    Framing = iota // HTTP/1.1 client: chunked transfer coding
	UntilClose                // HTTP/1.0 client: the body ends when proxyto closes the connection
	numFramings
)

// FramingFor returns the framing for a client that sent HTTP/1.minor.
func FramingFor(minor uint8) Framing {
	if minor == 0 {
		return UntilClose
	}
	return Chunked
}

// line classifies a response header line for the rewrite.
type line uint8

const (
	lineOther line = iota
	lineContentLength
	lineTransferEncoding
	lineVary
	numLines
)

// dropLine is the one table of what compressing a body does to the
// upstream's header lines: per line and framing, whether the line is left
// out. Every other end-to-end line is re-emitted byte for byte, in arrival
// order; hop-by-hop lines are already out, as in httpparse's AppendEndToEnd.
// AppendHeader then adds Content-Encoding: gzip, Vary: Accept-Encoding
// (unless a Vary line already names it, or *), and for Chunked a
// Transfer-Encoding: chunked when no such line was kept.
var dropLine = [numLines][numFramings]bool{
	// The compressed length is only known at the end.
	lineContentLength: {Chunked: true, UntilClose: true},
	// Chunked stays chunked for an HTTP/1.1 client (Decide admits no other
	// transfer coding); an HTTP/1.0 client cannot read chunked at all.
	lineTransferEncoding: {UntilClose: true},
}

// lineOf classifies h.
func lineOf(h *httpparse.Header, buf []byte) line {
	switch h.Known {
	case httpparse.KnownContentLength:
		return lineContentLength
	case httpparse.KnownTransferEncoding:
		return lineTransferEncoding
	case httpparse.KnownOther:
		if fieldOf(h.Name.Bytes(buf)) == fVary {
			return lineVary
		}
	}
	return lineOther
}

// AppendHeader appends to dst the header lines, each with its CRLF, that the
// client gets with a compressed body in place of resp.AppendEndToEnd's:
// the same lines minus those dropLine drops, plus the added ones listed
// there. buf is the buffer resp was parsed from. The status line, any
// Connection line and the final CRLF stay the caller's, as for
// AppendEndToEnd (for UntilClose the caller sends Connection: close and
// closes after the body). It does not allocate when dst has room.
func AppendHeader(dst []byte, resp *httpparse.Response, buf []byte, f Framing) []byte {
	varyDone, teKept := false, false
	for i := range resp.Headers {
		h := &resp.Headers[i]
		if h.Hop {
			continue
		}
		l := lineOf(h, buf)
		if dropLine[l][f] {
			continue
		}
		switch l {
		case lineTransferEncoding:
			teKept = true
		case lineVary:
			v := h.Value.Bytes(buf)
			varyDone = varyDone || hasToken(v, "accept-encoding") || hasToken(v, "*")
		}
		dst = append(dst, h.Line.Bytes(buf)...)
		dst = append(dst, '\r', '\n')
	}
	if f == Chunked && !teKept {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	dst = append(dst, "Content-Encoding: gzip\r\n"...)
	if !varyDone {
		dst = append(dst, "Vary: Accept-Encoding\r\n"...)
	}
	return dst
}

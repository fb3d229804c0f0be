package harness

// Raw HTTP/1.x wire helpers for the plain-HTTP forwarding tests: heads are
// kept as the exact bytes that crossed the connection (net/http canonicalises
// and reorders header fields, which would hide what proxyto did to them), and
// bodies are framed by hand so that chunk boundaries and trailers can be
// copied verbatim or checked.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WireHead is one HTTP/1.x message head exactly as read.
type WireHead struct {
	// Raw is the head's bytes, start line through the blank line.
	Raw []byte
	// Line is the start line without its CRLF.
	Line string
	// Fields are the header lines exactly as sent, without CRLF, in order.
	Fields []string
}

// ReadWireHead reads one message head (start line through the empty line).
// Heads over 1 MiB are an error. Empty lines before the start line are
// skipped as RFC 9112 §2.2 allows.
func ReadWireHead(br *bufio.Reader) (*WireHead, error) {
	var raw []byte
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			raw = append(raw, line...)
			if len(raw) > 1<<20 {
				return nil, errors.New("message head over 1 MiB")
			}
			continue
		}
		if err != nil {
			raw = append(raw, line...)
			if len(raw) == 0 {
				return nil, err
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("incomplete head %q: %w", raw, err)
		}
		if len(raw) == 0 && (string(line) == "\r\n" || string(line) == "\n") {
			continue // leading empty line
		}
		raw = append(raw, line...)
		if len(raw) > 1<<20 {
			return nil, errors.New("message head over 1 MiB")
		}
		if string(line) == "\r\n" || string(line) == "\n" {
			break
		}
	}
	h := &WireHead{Raw: raw}
	s := strings.TrimRight(string(raw), "\r\n")
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	h.Line = lines[0]
	h.Fields = lines[1:]
	return h, nil
}

// ParseWireHead parses raw (a complete head) into a WireHead.
func ParseWireHead(raw []byte) (*WireHead, error) {
	return ReadWireHead(bufio.NewReader(bytes.NewReader(raw)))
}

// FieldName returns the name of header line l ("Name: value" → "Name").
func FieldName(l string) string {
	name, _, _ := strings.Cut(l, ":")
	return name
}

// FieldValue returns the value of header line l, without surrounding
// whitespace.
func FieldValue(l string) string {
	_, v, _ := strings.Cut(l, ":")
	return strings.Trim(v, " \t")
}

// Values returns the values of every field named name (case-insensitive), in
// order, without surrounding whitespace.
func (h *WireHead) Values(name string) []string {
	var out []string
	for _, l := range h.Fields {
		if strings.EqualFold(FieldName(l), name) {
			out = append(out, FieldValue(l))
		}
	}
	return out
}

// Get returns the first value of name, or "".
func (h *WireHead) Get(name string) string {
	if v := h.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Has reports whether a field named name is present.
func (h *WireHead) Has(name string) bool { return len(h.Values(name)) > 0 }

// HasToken reports whether a comma-separated list field name (e.g.
// Connection) holds token, case-insensitively.
func (h *WireHead) HasToken(name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// RequestLine splits a request head's start line.
func (h *WireHead) RequestLine() (method, target, proto string) {
	f := strings.SplitN(h.Line, " ", 3)
	for len(f) < 3 {
		f = append(f, "")
	}
	return f[0], f[1], f[2]
}

// StatusCode returns the status code of a response head, or 0.
func (h *WireHead) StatusCode() int {
	f := strings.SplitN(h.Line, " ", 3)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// Proto returns the HTTP version of a head ("HTTP/1.1").
func (h *WireHead) Proto() string {
	if strings.HasPrefix(h.Line, "HTTP/") { // response
		p, _, _ := strings.Cut(h.Line, " ")
		return p
	}
	_, _, p := h.RequestLine()
	return p
}

// WantsClose reports whether the message ends its connection: Connection:
// close, or HTTP/1.0 without Connection: keep-alive.
func (h *WireHead) WantsClose() bool {
	if h.HasToken("Connection", "close") {
		return true
	}
	return h.Proto() == "HTTP/1.0" && !h.HasToken("Connection", "keep-alive")
}

// Framing is how a message body is delimited.
type Framing int

const (
	// FrameNone: no body.
	FrameNone Framing = iota
	// FrameLength: Content-Length bytes.
	FrameLength
	// FrameChunked: chunked transfer coding, trailers included.
	FrameChunked
	// FrameClose: until the connection closes (responses only).
	FrameClose
)

func (f Framing) String() string {
	return [...]string{"none", "content-length", "chunked", "until-close"}[f]
}

// RequestFraming returns how a request's body is delimited (RFC 9112 §6.3),
// with an error for the ambiguous framings a careful server refuses.
func RequestFraming(h *WireHead) (Framing, int64, error) {
	te := h.Values("Transfer-Encoding")
	cl := h.Values("Content-Length")
	if len(te) > 0 {
		if len(cl) > 0 {
			return FrameNone, 0, errors.New("both Transfer-Encoding and Content-Length")
		}
		if !h.chunkedLast() {
			return FrameNone, 0, errors.New("Transfer-Encoding without chunked last")
		}
		return FrameChunked, 0, nil
	}
	if len(cl) > 0 {
		n, err := contentLength(cl)
		if err != nil {
			return FrameNone, 0, err
		}
		if n == 0 {
			return FrameNone, 0, nil
		}
		return FrameLength, n, nil
	}
	return FrameNone, 0, nil
}

// ResponseFraming returns how a response to a request with method is
// delimited (RFC 9112 §6.3).
func ResponseFraming(h *WireHead, method string) (Framing, int64, error) {
	code := h.StatusCode()
	if method == "HEAD" || code/100 == 1 || code == 204 || code == 304 {
		return FrameNone, 0, nil
	}
	if method == "CONNECT" && code/100 == 2 {
		return FrameNone, 0, nil
	}
	if len(h.Values("Transfer-Encoding")) > 0 {
		if h.chunkedLast() {
			return FrameChunked, 0, nil
		}
		return FrameClose, 0, nil
	}
	if cl := h.Values("Content-Length"); len(cl) > 0 {
		n, err := contentLength(cl)
		if err != nil {
			return FrameNone, 0, err
		}
		return FrameLength, n, nil
	}
	return FrameClose, 0, nil
}

func (h *WireHead) chunkedLast() bool {
	var codings []string
	for _, v := range h.Values("Transfer-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" {
				codings = append(codings, c)
			}
		}
	}
	return len(codings) > 0 && strings.EqualFold(codings[len(codings)-1], "chunked")
}

func contentLength(values []string) (int64, error) {
	var n int64 = -1
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" || strings.TrimLeft(part, "0123456789") != "" {
				return 0, fmt.Errorf("invalid Content-Length %q", v)
			}
			m, err := strconv.ParseInt(part, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid Content-Length %q", v)
			}
			if n >= 0 && m != n {
				return 0, fmt.Errorf("differing Content-Lengths %q", values)
			}
			n = m
		}
	}
	return n, nil
}

// CopyBody copies one body delimited by f (and n for FrameLength) from br.
// raw, when non-nil, receives the exact wire bytes (chunk-size lines,
// extensions, CRLFs and trailers included); data, when non-nil, receives the
// decoded payload. It returns the trailer lines of a chunked body and the
// number of payload bytes.
func CopyBody(br *bufio.Reader, f Framing, n int64, raw, data io.Writer) (trailers []string, payload int64, err error) {
	if raw == nil {
		raw = io.Discard
	}
	if data == nil {
		data = io.Discard
	}
	switch f {
	case FrameNone:
		return nil, 0, nil
	case FrameLength:
		payload, err = io.CopyN(io.MultiWriter(raw, data), br, n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, payload, err
	case FrameClose:
		payload, err = io.Copy(io.MultiWriter(raw, data), br)
		return nil, payload, err
	}
	// chunked
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, payload, err
		}
		if _, err := io.WriteString(raw, line); err != nil {
			return nil, payload, err
		}
		sizeStr, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
		sizeStr = strings.TrimRight(sizeStr, " \t")
		size, perr := strconv.ParseUint(sizeStr, 16, 62)
		if perr != nil || sizeStr == "" || strings.TrimLeft(sizeStr, "0123456789abcdefABCDEF") != "" {
			return nil, payload, fmt.Errorf("bad chunk size line %q", line)
		}
		if size == 0 {
			for {
				tl, err := readLine(br)
				if err != nil {
					return trailers, payload, err
				}
				if _, err := io.WriteString(raw, tl); err != nil {
					return trailers, payload, err
				}
				if tl == "\r\n" || tl == "\n" {
					return trailers, payload, nil
				}
				trailers = append(trailers, strings.TrimRight(tl, "\r\n"))
			}
		}
		k, err := io.CopyN(io.MultiWriter(raw, data), br, int64(size))
		payload += k
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, payload, err
		}
		crlf, err := readLine(br)
		if err != nil {
			return nil, payload, err
		}
		if crlf != "\r\n" && crlf != "\n" {
			return nil, payload, fmt.Errorf("chunk data not followed by CRLF: %q", crlf)
		}
		if _, err := io.WriteString(raw, crlf); err != nil {
			return nil, payload, err
		}
	}
}

func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		line, err := br.ReadSlice('\n')
		b = append(b, line...)
		if err == bufio.ErrBufferFull {
			if len(b) > 64<<10 {
				return "", errors.New("line over 64 KiB")
			}
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return string(b), err
		}
		return string(b), nil
	}
}

// WireResponse is one response read by ReadWireResponse.
type WireResponse struct {
	Head *WireHead
	// Status is the status code.
	Status int
	// Framing is how the body was delimited.
	Framing Framing
	// Body is the decoded payload (only its first BodyCap bytes when the
	// body was read with a cap).
	Body []byte
	// BodyLen and BodySHA256 cover the whole decoded payload.
	BodyLen    int64
	BodySHA256 string
	// Trailers are the trailer lines of a chunked body.
	Trailers []string
}

// BodyCap is how much of a body ReadWireResponse keeps in Body.
const BodyCap = 1 << 20

// ReadWireResponse reads one response (head and body) to a request with
// method. A 1xx response is returned on its own (without body); call again
// for the final one. The body is hashed whole and kept up to BodyCap.
func ReadWireResponse(br *bufio.Reader, method string) (*WireResponse, error) {
	h, err := ReadWireHead(br)
	if err != nil {
		return nil, err
	}
	r := &WireResponse{Head: h, Status: h.StatusCode()}
	f, n, err := ResponseFraming(h, method)
	if err != nil {
		return r, err
	}
	r.Framing = f
	sum := sha256.New()
	keep := &capWriter{max: BodyCap}
	r.Trailers, r.BodyLen, err = CopyBody(br, f, n, nil, io.MultiWriter(sum, keep))
	r.Body = keep.buf
	r.BodySHA256 = hex.EncodeToString(sum.Sum(nil))
	return r, err
}

// ReadFinalWireResponse is ReadWireResponse that skips 1xx responses (other
// than 101) and returns them separately.
func ReadFinalWireResponse(br *bufio.Reader, method string) (final *WireResponse, informational []*WireResponse, err error) {
	for {
		r, err := ReadWireResponse(br, method)
		if err != nil {
			return r, informational, err
		}
		if r.Status/100 == 1 && r.Status != 101 {
			informational = append(informational, r)
			continue
		}
		return r, informational, nil
	}
}

type capWriter struct {
	buf []byte
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.buf); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		w.buf = append(w.buf, p[:room]...)
	}
	return len(p), nil
}

// WriteChunked writes p as one chunk (nothing for empty p).
func WriteChunked(w io.Writer, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "%x\r\n", len(p)); err != nil {
		return err
	}
	if _, err := w.Write(p); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}

// WriteLastChunk writes the last chunk, the trailer lines and the final CRLF.
func WriteLastChunk(w io.Writer, trailers ...string) error {
	var b strings.Builder
	b.WriteString("0\r\n")
	for _, t := range trailers {
		b.WriteString(t)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	_, err := io.WriteString(w, b.String())
	return err
}

package harness

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WireOrigin is the HTTP/1.1 origin server of every test (plain, or over TLS
// with StartTLSOrigin) on 127.0.0.1. It records every request head byte for byte with its body
// (length, sha256, first BodyCap bytes, trailers), and answers from handlers
// that write raw response bytes, so a test controls the exact response head
// and framing. Keep-alive is honoured unless a handler says otherwise.
//
// Built-in paths (query parameters in brackets):
//
//	/bytes?n=N       200, Content-Length N, N bytes of the pattern
//	/small           200, Content-Length, SmallBody
//	/echo            200, the request head exactly as received followed by
//	                 its decoded body
//	/chunked?n=N     200, chunked, N bytes of the pattern in 16 KiB chunks,
//	                 trailers "X-Checksum: <sha256>" and "X-Trailer-Two: 2"
//	/close?n=N       200 with neither length nor chunking: N pattern bytes,
//	                 then the connection closes
//	/status/NNN      status NNN, header "X-Status: NNN"; a body "status NNN\n"
//	                 with Content-Length unless NNN is 204 or 304 (304 carries
//	                 Content-Length: 1234 and no body)
//	/early-hints     a 103 Early Hints, then /summary's answer
//	/conn-close      /summary's answer with Connection: close, then closes
//	/ws              101 Switching Protocols (Connection: Upgrade, Upgrade:
//	                 websocket) when asked to upgrade, then echoes bytes
//	anything else    /summary: 200, Content-Length, body
//	                 "<method> <target> len=<body length> sha=<body sha256>\n";
//	                 a request with Expect: 100-continue gets a 100 Continue
//	                 before its body is read
//
// Handle adds or replaces a path's handler.
type WireOrigin struct {
	// Addr is "127.0.0.1:P".
	Addr string

	ln       net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	handlers map[string]OriginHandler
	reqs     []OriginRequest
	noRecord atomic.Bool
	set      connSet
	changed  chan struct{}
}

// OriginRequest is what a WireOrigin recorded of one request.
type OriginRequest struct {
	// Conn numbers the connection it arrived on, from 1.
	Conn int
	Head *WireHead
	// Framing of the request body, its decoded length and sha256, the first
	// BodyCap bytes, and the trailer lines of a chunked body.
	Framing  Framing
	BodyLen  int64
	BodySHA  string
	Body     []byte
	Trailers []string
	// BodyErr is the error reading the body ended with, if any.
	BodyErr error
}

// OriginExchange is one request being served by a handler.
type OriginExchange struct {
	Head   *WireHead
	Method string
	// URL is the parsed request target.
	URL *url.URL
	// Conn and R are the connection and its reader (which may hold bytes
	// already read), for handlers that take the connection over.
	Conn net.Conn
	R    *bufio.Reader

	o        *WireOrigin
	conn     int
	bodyDone bool
	rec      OriginRequest
}

// OriginHandler serves one exchange and reports whether the connection may
// serve another request.
type OriginHandler func(x *OriginExchange) (keepAlive bool)

// StartWireOrigin starts a WireOrigin, closed in t.Cleanup.
func StartWireOrigin(t TB) *WireOrigin {
	t.Helper()
	return startWireOrigin(t, nil)
}

// TLSOrigin is a WireOrigin served over TLS with a certificate for
// localhost, 127.0.0.1 and ::1 issued by a throw-away CA.
type TLSOrigin struct {
	*WireOrigin
	// CAFile is a PEM file of the CA certificate, for curl --cacert.
	CAFile string
	// Pool trusts the CA, for Go TLS clients.
	Pool *x509.CertPool

	ca *TestCA
}

// StartTLSOrigin starts a WireOrigin over TLS, closed in t.Cleanup.
func StartTLSOrigin(t TB) *TLSOrigin {
	t.Helper()
	ca := NewTestCA(t)
	o := startWireOrigin(t, &tls.Config{Certificates: []tls.Certificate{ca.ServerCert}, MinVersion: tls.VersionTLS12})
	return &TLSOrigin{WireOrigin: o, CAFile: ca.CAFile, Pool: ca.Pool, ca: ca}
}

// Certificate returns the certificate a client must trust: the CA's.
func (o *TLSOrigin) Certificate() *x509.Certificate { return o.ca.cert }

func startWireOrigin(t TB, tlsConf *tls.Config) *WireOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: wire origin listen: %v", err)
	}
	o := &WireOrigin{
		Addr:     ln.Addr().String(),
		ln:       ln,
		handlers: map[string]OriginHandler{},
		changed:  make(chan struct{}),
	}
	o.handlers["/bytes"] = originBytes
	o.handlers["/small"] = func(x *OriginExchange) bool {
		x.ReadBody()
		x.WriteString(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s", len(SmallBody), SmallBody))
		return true
	}
	o.handlers["/echo"] = func(x *OriginExchange) bool {
		r := x.ReadBody()
		body := string(x.Head.Raw) + string(r.Body)
		x.WriteString(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		return true
	}
	o.handlers["/chunked"] = originChunked
	o.handlers["/close"] = originUntilClose
	o.handlers["/early-hints"] = func(x *OriginExchange) bool {
		x.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
		return OriginSummary(x)
	}
	o.handlers["/conn-close"] = func(x *OriginExchange) bool {
		x.ReadBody()
		body := x.summary()
		x.WriteString(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body))
		return false
	}
	o.handlers["/ws"] = originUpgradeEcho
	o.handlers["/status/"] = StatusHandler
	o.set.serve(ln, func(c net.Conn) {
		n := int(o.accepted.Add(1))
		c.SetDeadline(time.Now().Add(10 * time.Minute))
		if tlsConf != nil {
			c = tls.Server(c, tlsConf)
			defer c.Close()
		}
		o.handle(c, n)
	})
	t.Cleanup(o.Close)
	return o
}

// Handle sets the handler for requests whose path is path exactly, or starts
// with path when path ends in "/".
func (o *WireOrigin) Handle(path string, h OriginHandler) {
	o.mu.Lock()
	o.handlers[path] = h
	o.mu.Unlock()
}

// StopRecording makes the origin keep no more requests (Requests and
// WaitRequests see only those before), so memory stays flat over a long run.
func (o *WireOrigin) StopRecording() { o.noRecord.Store(true) }

// URL returns "http://127.0.0.1:P" + pathQuery.
func (o *WireOrigin) URL(pathQuery string) string { return "http://" + o.Addr + pathQuery }

// Accepted returns the number of connections accepted so far.
func (o *WireOrigin) Accepted() int64 { return o.accepted.Load() }

// Requests returns what was recorded so far, in arrival order (a request is
// recorded once its handler returned).
func (o *WireOrigin) Requests() []OriginRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]OriginRequest(nil), o.reqs...)
}

// WaitRequests waits up to timeout until n requests were recorded and returns
// what was recorded.
func (o *WireOrigin) WaitRequests(n int, timeout time.Duration) []OriginRequest {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		have, ch := len(o.reqs), o.changed
		o.mu.Unlock()
		if have >= n {
			return o.Requests()
		}
		select {
		case <-ch:
		case <-deadline.C:
			return o.Requests()
		}
	}
}

// Close stops the listener, closes every connection and waits for handlers.
func (o *WireOrigin) Close() { o.set.close(o.ln) }

func (o *WireOrigin) handle(c net.Conn, n int) {
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		h, err := ReadWireHead(br)
		if err != nil {
			return
		}
		method, target, _ := h.RequestLine()
		u, err := url.ParseRequestURI(target)
		if err != nil {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		x := &OriginExchange{Head: h, Method: method, URL: u, Conn: c, R: br, o: o, conn: n}
		x.rec = OriginRequest{Conn: n, Head: h}
		o.mu.Lock()
		hd := o.handlers[u.Path]
		if hd == nil {
			best := ""
			for p, f := range o.handlers {
				if strings.HasSuffix(p, "/") && strings.HasPrefix(u.Path, p) && len(p) > len(best) {
					best, hd = p, f
				}
			}
		}
		o.mu.Unlock()
		if hd == nil {
			hd = OriginSummary
		}
		keep := hd(x)
		if !x.bodyDone {
			x.ReadBody()
		}
		if !o.noRecord.Load() {
			o.mu.Lock()
			o.reqs = append(o.reqs, x.rec)
			close(o.changed)
			o.changed = make(chan struct{})
			o.mu.Unlock()
		}
		if !keep || x.rec.BodyErr != nil || h.WantsClose() {
			return
		}
	}
}

// ReadBody reads the request body (once) and records it.
func (x *OriginExchange) ReadBody() OriginRequest {
	if x.bodyDone {
		return x.rec
	}
	x.bodyDone = true
	f, n, err := RequestFraming(x.Head)
	x.rec.Framing = f
	if err != nil {
		x.rec.BodyErr = err
		return x.rec
	}
	sum := sha256.New()
	keep := &capWriter{max: BodyCap}
	x.rec.Trailers, x.rec.BodyLen, x.rec.BodyErr = CopyBody(x.R, f, n, nil, io.MultiWriter(sum, keep))
	x.rec.Body = keep.buf
	x.rec.BodySHA = hex.EncodeToString(sum.Sum(nil))
	return x.rec
}

// WriteString writes s to the client; errors show up in later reads.
func (x *OriginExchange) WriteString(s string) { _, _ = io.WriteString(x.Conn, s) }

// Write writes b to the client.
func (x *OriginExchange) Write(b []byte) (int, error) { return x.Conn.Write(b) }

func (x *OriginExchange) summary() string {
	r := x.ReadBody()
	_, target, _ := x.Head.RequestLine()
	return fmt.Sprintf("%s %s len=%d sha=%s\n", x.Method, target, r.BodyLen, r.BodySHA)
}

// SummaryBody is /summary's body for a request with method, target and body.
func SummaryBody(method, target string, body []byte) string {
	return fmt.Sprintf("%s %s len=%d sha=%s\n", method, target, len(body), SHA256Hex(body))
}

// OriginSummary is the default handler: 100 Continue when asked, then 200
// with SummaryBody (no body bytes for HEAD, Content-Length still set).
func OriginSummary(x *OriginExchange) bool {
	if x.Head.HasToken("Expect", "100-continue") {
		x.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	}
	body := x.summary()
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Origin-Conn: %d\r\nContent-Length: %d\r\n\r\n", x.conn, len(body))
	if x.Method == "HEAD" {
		x.WriteString(head)
	} else {
		x.WriteString(head + body)
	}
	return true
}

func queryN(x *OriginExchange) int64 {
	n, err := strconv.ParseInt(x.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func originBytes(x *OriginExchange) bool {
	x.ReadBody()
	n := queryN(x)
	x.WriteString(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", n))
	if x.Method == "HEAD" {
		return true
	}
	bw := bufio.NewWriterSize(x.Conn, 256<<10)
	if _, err := io.Copy(bw, PatternReader(n)); err != nil {
		return false
	}
	return bw.Flush() == nil
}

func originChunked(x *OriginExchange) bool {
	x.ReadBody()
	n := queryN(x)
	x.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Trailer-Two\r\n\r\n")
	if x.Method == "HEAD" {
		return true
	}
	bw := bufio.NewWriterSize(x.Conn, 64<<10)
	r := PatternReader(n)
	buf := make([]byte, 16<<10)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if WriteChunked(bw, buf[:k]) != nil {
				return false
			}
		}
		if err != nil {
			break
		}
	}
	WriteLastChunk(bw, "X-Checksum: "+PatternSHA256(n), "X-Trailer-Two: 2")
	return bw.Flush() == nil
}

func originUntilClose(x *OriginExchange) bool {
	x.ReadBody()
	n := queryN(x)
	x.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
	if x.Method != "HEAD" {
		io.Copy(x.Conn, PatternReader(n))
	}
	return false
}

// StatusHandler answers /status/NNN (see WireOrigin).
func StatusHandler(x *OriginExchange) bool {
	x.ReadBody()
	code, err := strconv.Atoi(strings.TrimPrefix(x.URL.Path, "/status/"))
	if err != nil || code < 100 || code > 999 {
		code = 400
	}
	switch code {
	case 204:
		x.WriteString("HTTP/1.1 204 No Content\r\nX-Status: 204\r\n\r\n")
	case 304:
		x.WriteString("HTTP/1.1 304 Not Modified\r\nX-Status: 304\r\nETag: \"itest\"\r\nContent-Length: 1234\r\n\r\n")
	default:
		body := fmt.Sprintf("status %d\n", code)
		s := fmt.Sprintf("HTTP/1.1 %d Status %d\r\nX-Status: %d\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", code, code, code, len(body))
		if x.Method != "HEAD" {
			s += body
		}
		x.WriteString(s)
	}
	return true
}

func originUpgradeEcho(x *OriginExchange) bool {
	x.ReadBody()
	if !x.Head.HasToken("Connection", "upgrade") || !strings.EqualFold(x.Head.Get("Upgrade"), "websocket") {
		body := "upgrade required\n"
		x.WriteString(fmt.Sprintf("HTTP/1.1 426 Upgrade Required\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		return true
	}
	x.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Upgraded: yes\r\n\r\n")
	// Echo: bytes already buffered first, then the connection.
	if _, err := io.Copy(x.Conn, x.R); err == nil {
		closeWrite(x.Conn)
	}
	return false
}

package harness

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WireMode is how a WireUpstream answers.
type WireMode int32

const (
	// WireForward forwards CONNECT and absolute-form requests (the default).
	WireForward WireMode = iota
	// WireHang reads the request head and never answers.
	WireHang
	// WireReset reads the request head, then resets the connection.
	WireReset
	// WireCloseBeforeAnswer reads the request head, then closes (FIN).
	WireCloseBeforeAnswer
	// Wire407 answers 407 with Proxy-Authenticate and closes.
	Wire407
	// Wire403 answers 403 and closes.
	Wire403
	// WireHalfBodyReset answers 200 with Content-Length: HalfBodyLength,
	// sends half of that many bytes ('x') and resets the connection.
	WireHalfBodyReset
	// WireGarbage answers GarbageAnswer (neither HTTP nor SOCKS5) and waits
	// for the peer to close.
	WireGarbage
	// WireSlowHead serves normally but writes response heads (and a SOCKS5
	// server its replies) one byte per SlowHeadPause.
	WireSlowHead
	// WireCutReset serves normally but resets the connection after CutAfter
	// bytes of response body (of a tunnel: of bytes from the target).
	WireCutReset
	// WireCutClose is WireCutReset with a clean close (FIN) instead of the
	// reset.
	WireCutClose
	// Wire503 answers 503 Service Unavailable and closes.
	Wire503
	// WireTinyproxy serves the request (its response keeps whatever
	// keep-alive framing the origin gave it, no Connection: close added),
	// then, like tinyproxy, serves nothing more on the connection: it closes
	// it 0..TinyproxyMaxDelay later, dropping any request sent meanwhile.
	WireTinyproxy
)

// ExitIPHeader is the response header line an upstream adds by default to
// its CONNECT 200, as proxy vendors report the exit address.
const ExitIPHeader = "X-Exit-IP: 203.0.113.7"

// BasicAuth returns the Proxy-Authorization value for user and pass.
func BasicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// HalfBodyLength is the Content-Length WireHalfBodyReset announces; it sends
// HalfBodyLength/2 bytes.
const HalfBodyLength = 100000

// WireUpstreamOptions configure StartWireUpstream. The zero value is an open
// plain-TCP upstream that forwards.
type WireUpstreamOptions struct {
	// Auth makes the upstream require Proxy-Authorization: Basic User:Pass
	// (407 and close otherwise).
	Auth       bool
	User, Pass string
	// TLS, when set, makes the upstream an https proxy with a certificate
	// for localhost and 127.0.0.1 issued by this CA.
	TLS *TestCA
	// Mode is the initial WireMode.
	Mode WireMode
	// ConnectHeaders, when not nil, replace the extra header lines
	// ("Name: value") of the CONNECT 200 answer; the default is
	// ExitIPHeader.
	ConnectHeaders []string
	// EarlyBytes are written in the same write as the CONNECT 200 head,
	// before anything from the target.
	EarlyBytes []byte
	// ResponseFields are header lines ("Via: 1.1 x") added to every final
	// response head the upstream forwards.
	ResponseFields []string
	// Dial, when set, replaces the TCP dial to a CONNECT target or an
	// origin (addr is "host:port" as the request named it).
	Dial func(addr string) (net.Conn, error)
	// Faults lets each request pick its own WireMode by name in a
	// FaultHeader field (an unknown name is answered 400).
	Faults bool
	// NoRecord keeps no request heads (Heads and WaitHeads see none), so
	// memory stays flat over a long run.
	NoRecord bool
	// OnHead, when set, is called with each request head as it arrives,
	// before any fault or forwarding: for a caller that wants to know
	// when a request reached the upstream without keeping every head. It
	// runs on the connection's goroutine, so it must be quick.
	OnHead func(*WireHead)
	// OnBody, when set, is called when the body of a forwarded request
	// (head h) has been read through (err nil) or broke off, with the
	// payload bytes read. It runs on a connection's goroutine.
	OnBody func(h *WireHead, payload int64, err error)
}

// WireUpstream is the upstream proxy of every test (itest, the engine's
// in-process tests, the soak): a raw-TCP HTTP/1.1 forward proxy that can
// require Basic auth and be told to misbehave (WireMode). It touches as
// little as it can: it records each request
// head byte for byte (with the number of the connection it came on), rewrites
// only the request line to origin-form and drops Proxy-Authorization, then
// copies the rest of the head, the body (framing, chunk lines and trailers
// verbatim) and the origin's response (head verbatim, hop-by-hop fields
// included, 1xx and 101 too) without change. It keeps one origin connection
// per (client connection, origin) for keep-alive, relays both ways after a
// 101, and serves CONNECT. A response carrying Connection: close does not make
// it close the client connection (so a test can see whether proxyto reuses
// it); a response delimited by close does. It counts connections, request
// heads and bytes read, and can close idle or reused client connections.
type WireUpstream struct {
	// Addr is the listener, "127.0.0.1:P".
	Addr string

	opt        WireUpstreamOptions
	ln         net.Listener
	mode       atomic.Int32
	conns      atomic.Int64
	requests   atomic.Int64 // request heads read
	rx         atomic.Int64 // bytes read from clients
	dropReused atomic.Int64
	mu         sync.Mutex
	heads      []UpstreamHead
	idle       map[net.Conn]bool // client connections → waiting for a request
	set        connSet
	changed    chan struct{}
}

// UpstreamHead is one request head a WireUpstream received.
type UpstreamHead struct {
	// Conn numbers the connection it arrived on, from 1 in accept order.
	Conn int
	Head *WireHead
}

// StartWireUpstream starts a WireUpstream on 127.0.0.1, closed in t.Cleanup.
func StartWireUpstream(t TB, opt WireUpstreamOptions) *WireUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: wire upstream listen: %v", err)
	}
	u := &WireUpstream{Addr: ln.Addr().String(), opt: opt, ln: ln, changed: make(chan struct{}), idle: map[net.Conn]bool{}}
	u.mode.Store(int32(opt.Mode))
	var tlsConf *tls.Config
	if opt.TLS != nil {
		tlsConf = &tls.Config{Certificates: []tls.Certificate{opt.TLS.ServerCert}, MinVersion: tls.VersionTLS12}
	}
	u.set.serve(ln, func(raw net.Conn) {
		n := int(u.conns.Add(1))
		c := raw
		if tlsConf != nil {
			c = tls.Server(raw, tlsConf)
			defer c.Close()
		}
		c.SetDeadline(time.Now().Add(10 * time.Minute))
		u.handle(c, raw, n)
	})
	t.Cleanup(u.Close)
	return u
}

// SetMode changes how new request heads are answered.
func (u *WireUpstream) SetMode(m WireMode) { u.mode.Store(int32(m)) }

// Conns returns the number of connections accepted so far.
func (u *WireUpstream) Conns() int64 { return u.conns.Load() }

// Requests returns the number of request heads read so far (NoRecord or
// not).
func (u *WireUpstream) Requests() int64 { return u.requests.Load() }

// ReadBytes returns how many bytes the upstream read from its clients so far
// (after TLS), request heads, bodies and tunnelled bytes alike.
func (u *WireUpstream) ReadBytes() int64 { return u.rx.Load() }

// DropReused makes the upstream close, n times, a connection on which a
// request arrives that is not the connection's first (after recording its
// head, without answering), as an upstream that timed an idle connection out
// just as a request was sent on it.
func (u *WireUpstream) DropReused(n int64) { u.dropReused.Store(n) }

// Open returns the number of client connections open.
func (u *WireUpstream) Open() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.idle)
}

// CloseIdle closes every client connection that waits for its next request
// (FIN) and returns how many it closed.
func (u *WireUpstream) CloseIdle() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for c, idle := range u.idle {
		if idle {
			c.Close()
			n++
		}
	}
	return n
}

// setIdle marks client connection raw as waiting for a request, or not.
func (u *WireUpstream) setIdle(raw net.Conn, idle bool) {
	u.mu.Lock()
	u.idle[raw] = idle
	u.mu.Unlock()
}

// Heads returns the request heads received so far, in arrival order.
func (u *WireUpstream) Heads() []UpstreamHead {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]UpstreamHead(nil), u.heads...)
}

// WaitHeads waits up to timeout until n heads were received and returns the
// heads received.
func (u *WireUpstream) WaitHeads(n int, timeout time.Duration) []UpstreamHead {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		have, ch := len(u.heads), u.changed
		u.mu.Unlock()
		if have >= n {
			return u.Heads()
		}
		select {
		case <-ch:
		case <-deadline.C:
			return u.Heads()
		}
	}
}

// URL returns scheme://[user:pass@]addr for X-Proxy-To, scheme being http or
// https (with TLS). With TLS the host is "localhost", which the certificate
// names.
func (u *WireUpstream) URL(userinfo string) string {
	if u.opt.TLS != nil {
		return "https://" + userinfo + "localhost:" + u.Addr[strings.LastIndexByte(u.Addr, ':')+1:]
	}
	return "http://" + userinfo + u.Addr
}

// LastHead returns the raw bytes of the most recent request head, or nil.
func (u *WireUpstream) LastHead() []byte {
	h := u.Heads()
	if len(h) == 0 {
		return nil
	}
	return h[len(h)-1].Head.Raw
}

// ProxyURL returns URL with the credentials the upstream requires, if any,
// for curl -x and similar.
func (u *WireUpstream) ProxyURL() string {
	if u.opt.Auth {
		return u.URL(u.opt.User + ":" + u.opt.Pass + "@")
	}
	return u.URL("")
}

// DropConns closes every open connection (FIN), as an upstream does with
// connections idle too long. New connections are still accepted.
func (u *WireUpstream) DropConns() { u.set.dropAll() }

// Close stops the listener, closes every connection and waits for handlers.
func (u *WireUpstream) Close() { u.set.close(u.ln) }

func (u *WireUpstream) record(n int, h *WireHead) {
	u.requests.Add(1)
	if u.opt.OnHead != nil {
		u.opt.OnHead(h)
	}
	if u.opt.NoRecord {
		return
	}
	u.mu.Lock()
	u.heads = append(u.heads, UpstreamHead{Conn: n, Head: h})
	close(u.changed)
	u.changed = make(chan struct{})
	u.mu.Unlock()
}

func wireStatus(w io.Writer, code int, reason, extra, body string) {
	body += "\n"
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, reason, extra, len(body), body)
}

type originLink struct {
	c  net.Conn
	br *bufio.Reader
}

func (u *WireUpstream) handle(c, raw net.Conn, n int) {
	br := bufio.NewReaderSize(countReader{c, &u.rx}, 64<<10)
	origins := map[string]*originLink{}
	defer func() {
		u.mu.Lock()
		delete(u.idle, raw)
		u.mu.Unlock()
		for _, l := range origins {
			u.set.untrack(l.c)
			l.c.Close()
		}
	}()
	for nth := 1; ; nth++ {
		u.setIdle(raw, true)
		h, err := ReadWireHead(br)
		u.setIdle(raw, false)
		if err != nil {
			return
		}
		u.record(n, h)
		if nth > 1 && u.dropReused.Load() > 0 && u.dropReused.Add(-1) >= 0 {
			return
		}
		mode := WireMode(u.mode.Load())
		if v := h.Get(FaultHeader); u.opt.Faults && v != "" {
			m, ok := ParseWireMode(v)
			if !ok {
				wireStatus(c, 400, "Bad Request", "", "unknown fault")
				return
			}
			mode = m
		}
		switch mode {
		case WireHang:
			_, _ = io.Copy(io.Discard, br)
			return
		case WireReset:
			resetConn(raw)
			return
		case WireCloseBeforeAnswer:
			return
		case Wire407:
			wireStatus(c, 407, "Proxy Authentication Required", "Proxy-Authenticate: Basic realm=\"itest\"\r\n", "proxy authentication required")
			lingerClose(c, raw, br)
			return
		case Wire403:
			wireStatus(c, 403, "Forbidden", "", "forbidden by upstream")
			lingerClose(c, raw, br)
			return
		case Wire503:
			wireStatus(c, 503, "Service Unavailable", "", "upstream unavailable")
			lingerClose(c, raw, br)
			return
		case WireHalfBodyReset:
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s",
				HalfBodyLength, strings.Repeat("x", HalfBodyLength/2))
			resetConn(raw)
			return
		case WireGarbage:
			garbage(c, br)
			return
		}
		if u.opt.Auth && h.Get("Proxy-Authorization") != BasicAuth(u.opt.User, u.opt.Pass) {
			wireStatus(c, 407, "Proxy Authentication Required", "Proxy-Authenticate: Basic realm=\"itest\"\r\n", "proxy authentication required")
			lingerClose(c, raw, br)
			return
		}
		method, target, proto := h.RequestLine()
		if method == "CONNECT" {
			u.connect(c, raw, br, target, mode)
			return
		}
		if !u.forward(c, raw, br, h, method, target, proto, origins, mode) {
			return
		}
		if mode == WireTinyproxy {
			tinyproxyPause()
			return
		}
	}
}

func (u *WireUpstream) dial(addr string) (net.Conn, error) {
	if u.opt.Dial != nil {
		return u.opt.Dial(addr)
	}
	return net.DialTimeout("tcp", addr, 10*time.Second)
}

// withFields returns the raw head rh with ResponseFields added when it is a
// final response (status 200 and up, 101 aside).
func (u *WireUpstream) withFields(rh *WireHead, code int) []byte {
	if len(u.opt.ResponseFields) == 0 || code < 200 {
		return rh.Raw
	}
	// Drop the blank line that ends the head; the last field keeps its
	// line end.
	head := rh.Raw[:len(rh.Raw)-1]
	if bytes.HasSuffix(head, []byte("\r")) {
		head = head[:len(head)-1]
	}
	out := append([]byte(nil), head...)
	for _, l := range u.opt.ResponseFields {
		out = append(append(out, l...), "\r\n"...)
	}
	return append(out, "\r\n"...)
}

// connect opens a tunnel to target; mode may slow its head down or cut it.
func (u *WireUpstream) connect(c, raw net.Conn, br *bufio.Reader, target string, mode WireMode) {
	t, err := u.dial(target)
	if err != nil {
		wireStatus(c, 502, "Bad Gateway", "", "upstream could not reach the target")
		return
	}
	if !u.set.track(t) {
		t.Close()
		return
	}
	defer u.set.untrack(t)
	defer t.Close()
	head := []byte("HTTP/1.1 200 Connection established\r\n")
	extra := u.opt.ConnectHeaders
	if extra == nil {
		extra = []string{ExitIPHeader}
	}
	for _, l := range extra {
		head = append(append(head, l...), "\r\n"...)
	}
	head = append(append(head, "\r\n"...), u.opt.EarlyBytes...)
	if err := writeHead(c, head, mode); err != nil {
		return
	}
	Relay(cutter(c, raw, mode), br, t, t)
}

// forward serves one absolute-form request, slowing its response head down or
// cutting its body as mode says; it reports whether the client connection may
// carry another.
func (u *WireUpstream) forward(c, raw net.Conn, br *bufio.Reader, h *WireHead, method, target, proto string, origins map[string]*originLink, mode WireMode) bool {
	tu, err := url.Parse(target)
	if err != nil || tu.Scheme != "http" || tu.Host == "" {
		wireStatus(c, 400, "Bad Request", "", "WireUpstream wants absolute-form http:// requests")
		return false
	}
	host := tu.Host
	if tu.Port() == "" {
		host += ":80"
	}
	reqFraming, reqLen, err := RequestFraming(h)
	if err != nil {
		wireStatus(c, 400, "Bad Request", "", "bad request framing: "+err.Error())
		return false
	}
	var out strings.Builder
	out.WriteString(method + " " + tu.RequestURI() + " " + proto + "\r\n")
	for _, l := range h.Fields {
		if strings.EqualFold(FieldName(l), "Proxy-Authorization") {
			continue
		}
		out.WriteString(l + "\r\n")
	}
	out.WriteString("\r\n")

	ol := origins[host]
	if ol == nil {
		oc, err := u.dial(host)
		if err != nil {
			wireStatus(c, 502, "Bad Gateway", "", "upstream could not reach the origin")
			return false
		}
		if !u.set.track(oc) {
			oc.Close()
			return false
		}
		oc.SetDeadline(time.Now().Add(10 * time.Minute))
		ol = &originLink{c: oc, br: bufio.NewReaderSize(oc, 64<<10)}
		origins[host] = ol
	}
	drop := func() { u.set.untrack(ol.c); ol.c.Close(); delete(origins, host) }
	if _, err := io.WriteString(ol.c, out.String()); err != nil {
		drop()
		wireStatus(c, 502, "Bad Gateway", "", "origin connection failed")
		return false
	}
	bodyDone := make(chan error, 1)
	go func() {
		_, n, err := CopyBody(br, reqFraming, reqLen, ol.c, nil)
		if u.opt.OnBody != nil {
			u.opt.OnBody(h, n, err)
		}
		if err != nil {
			// The client went away mid-body: so does the origin
			// exchange, rather than wait for the rest of the body.
			ol.c.Close()
		}
		bodyDone <- err
	}()

	sent := false
	for {
		rh, err := ReadWireHead(ol.br)
		code := 0
		if rh != nil {
			code = rh.StatusCode()
		}
		if err != nil {
			drop()
			if !sent {
				// The body copy's error, if it ended, tells whether the
				// client broke off.
				msg := "origin closed before answering"
				select {
				case berr := <-bodyDone:
					if berr != nil {
						msg += " (request body: " + berr.Error() + ")"
					}
				case <-time.After(100 * time.Millisecond):
					msg += " (request body still streaming)"
				}
				wireStatus(c, 502, "Bad Gateway", "", msg)
			}
			return false
		}
		if err := writeHead(c, u.withFields(rh, code), mode); err != nil {
			drop()
			return false
		}
		sent = true
		if code == 101 {
			if err := <-bodyDone; err != nil {
				return false
			}
			delete(origins, host)
			defer u.set.untrack(ol.c)
			defer ol.c.Close()
			Relay(c, br, ol.c, ol.br)
			return false
		}
		if code/100 == 1 {
			continue
		}
		f, n, err := ResponseFraming(rh, method)
		if err != nil {
			drop()
			return false
		}
		body := cutter(c, raw, mode)
		if _, _, err := CopyBody(ol.br, f, n, body, nil); err != nil {
			drop()
			return false
		}
		if body != c {
			drop() // a cut connection carries nothing more
			return false
		}
		if err := <-bodyDone; err != nil {
			drop()
			return false
		}
		if f == FrameClose {
			drop()
			return false
		}
		if rh.WantsClose() {
			drop() // the origin closes; the client connection stays open
		}
		return !h.WantsClose()
	}
}

// Relay copies a→b and b→a until both directions end, passing on
// half-closes. ar and br are what to read from a and b.
func Relay(a net.Conn, ar io.Reader, b net.Conn, br io.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst net.Conn, src io.Reader) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		if err := closeWrite(dst); err != nil {
			a.Close()
			b.Close()
		}
	}
	go pipe(b, ar)
	go pipe(a, br)
	wg.Wait()
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

package harness

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how a TestUpstream answers.
type Mode int32

const (
	// ModeOK serves CONNECT and absolute-form requests (the default).
	ModeOK Mode = iota
	// ModeHang reads the request head and never answers; the connection stays
	// open until the peer closes it or the test ends.
	ModeHang
	// ModeReset reads the request head, then resets the connection
	// (SO_LINGER 0 + close sends a TCP RST).
	ModeReset
	// ModeCloseBeforeAnswer reads the request head, then closes (FIN) without
	// answering.
	ModeCloseBeforeAnswer
	// Mode407 answers 407 with Proxy-Authenticate, whatever the credentials.
	Mode407
	// Mode403 answers 403 Forbidden.
	Mode403
	// Mode5xx answers 503 Service Unavailable.
	Mode5xx
)

// ExitIPHeader is the response header line a TestUpstream adds by default to
// its CONNECT 200, as proxy vendors report the exit address.
const ExitIPHeader = "X-Exit-IP: 203.0.113.7"

// TestUpstream is an HTTP forward proxy written for the tests: it records the
// exact bytes of every request head it receives, can require Basic auth, and
// can be told to misbehave (Mode). Its methods are safe for concurrent use.
type TestUpstream struct {
	// Addr is the listener, "127.0.0.1:P".
	Addr string

	user, pass string
	auth       bool

	ln        net.Listener
	transport *http.Transport

	mode      atomic.Int32
	conns     atomic.Int64 // connections accepted
	requests  atomic.Int64 // request heads read
	mu        sync.Mutex
	heads     [][]byte
	extra     []string // response header lines added to the CONNECT 200
	early     []byte   // bytes written right after the CONNECT 200 head
	set       connSet
	headsCond chan struct{} // closed and replaced whenever a head is recorded
}

// UpstreamOption configures StartUpstream.
type UpstreamOption func(*TestUpstream)

// WithAuth makes the upstream require Proxy-Authorization: Basic user:pass and
// answer 407 otherwise.
func WithAuth(user, pass string) UpstreamOption {
	return func(u *TestUpstream) { u.user, u.pass, u.auth = user, pass, true }
}

// WithMode sets the initial Mode.
func WithMode(m Mode) UpstreamOption { return func(u *TestUpstream) { u.mode.Store(int32(m)) } }

// WithConnectHeaders replaces the extra header lines ("Name: value") of the
// CONNECT 200 answer; the default is ExitIPHeader.
func WithConnectHeaders(lines ...string) UpstreamOption {
	return func(u *TestUpstream) { u.extra = lines }
}

// WithEarlyBytes makes the upstream write b in the same write as its CONNECT
// 200 head, before relaying anything from the target.
func WithEarlyBytes(b []byte) UpstreamOption {
	return func(u *TestUpstream) { u.early = b }
}

// StartUpstream starts a TestUpstream on 127.0.0.1; it is closed in t.Cleanup.
func StartUpstream(t TB, opts ...UpstreamOption) *TestUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: upstream listen: %v", err)
	}
	u := &TestUpstream{
		Addr:      ln.Addr().String(),
		ln:        ln,
		extra:     []string{ExitIPHeader},
		headsCond: make(chan struct{}),
		transport: &http.Transport{
			Proxy:              nil,
			DisableCompression: true,
			ForceAttemptHTTP2:  false,
			MaxIdleConns:       16,
			IdleConnTimeout:    30 * time.Second,
		},
	}
	for _, o := range opts {
		o(u)
	}
	u.set.serve(ln, func(c net.Conn) {
		u.conns.Add(1)
		u.handle(c)
	})
	t.Cleanup(u.Close)
	return u
}

// SetMode changes how new request heads are answered.
func (u *TestUpstream) SetMode(m Mode) { u.mode.Store(int32(m)) }

// Conns returns the number of connections accepted so far.
func (u *TestUpstream) Conns() int64 { return u.conns.Load() }

// Requests returns the number of request heads read so far.
func (u *TestUpstream) Requests() int64 { return u.requests.Load() }

// Heads returns copies of the raw request heads received so far (request line
// through the blank line, exactly as read), in arrival order.
func (u *TestUpstream) Heads() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([][]byte, len(u.heads))
	for i, h := range u.heads {
		out[i] = bytes.Clone(h)
	}
	return out
}

// WaitHeads waits until at least n heads were received or timeout passes, and
// returns the heads received.
func (u *TestUpstream) WaitHeads(n int, timeout time.Duration) [][]byte {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		have, ch := len(u.heads), u.headsCond
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

// LastHead returns the most recent raw request head, or nil.
func (u *TestUpstream) LastHead() []byte {
	h := u.Heads()
	if len(h) == 0 {
		return nil
	}
	return h[len(h)-1]
}

// ProxyURL returns "http://user:pass@addr" for curl -x and similar.
func (u *TestUpstream) ProxyURL() string {
	if u.auth {
		return "http://" + u.user + ":" + u.pass + "@" + u.Addr
	}
	return "http://" + u.Addr
}

// Close stops the listener, closes every open connection and waits for the
// handlers to return.
func (u *TestUpstream) Close() {
	if u.set.close(u.ln) {
		u.transport.CloseIdleConnections()
	}
}

// readHead reads one request head (through the blank line) and returns its raw
// bytes. Heads over 1 MiB are an error.
func readHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if err == bufio.ErrBufferFull {
			if len(head) > 1<<20 {
				return nil, errors.New("request head over 1 MiB")
			}
			continue
		}
		if err != nil {
			if len(head) == 0 {
				return nil, err
			}
			return nil, fmt.Errorf("incomplete head (%d bytes): %w", len(head), err)
		}
		if len(head) > 1<<20 {
			return nil, errors.New("request head over 1 MiB")
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return head, nil
		}
	}
}

func (u *TestUpstream) record(head []byte) {
	u.requests.Add(1)
	u.mu.Lock()
	u.heads = append(u.heads, bytes.Clone(head))
	close(u.headsCond)
	u.headsCond = make(chan struct{})
	u.mu.Unlock()
}

func (u *TestUpstream) handle(c net.Conn) {
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		head, err := readHead(br)
		if err != nil {
			return
		}
		u.record(head)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			writeStatus(c, 400, "", "bad request head: "+err.Error())
			return
		}
		switch Mode(u.mode.Load()) {
		case ModeHang:
			_, _ = io.Copy(io.Discard, br) // until the peer closes or Close
			return
		case ModeReset:
			resetConn(c)
			return
		case ModeCloseBeforeAnswer:
			return
		case Mode407:
			writeStatus(c, 407, "Proxy-Authenticate: Basic realm=\"itest\"\r\n", "proxy authentication required")
			return
		case Mode403:
			writeStatus(c, 403, "", "forbidden by upstream")
			return
		case Mode5xx:
			writeStatus(c, 503, "", "upstream unavailable")
			return
		}
		if u.auth && req.Header.Get("Proxy-Authorization") != BasicAuth(u.user, u.pass) {
			writeStatus(c, 407, "Proxy-Authenticate: Basic realm=\"itest\"\r\n", "proxy authentication required")
			return
		}
		if req.Method == http.MethodConnect {
			u.connect(c, br, req)
			return
		}
		if !u.forward(c, br, req) {
			return
		}
	}
}

// BasicAuth returns the Proxy-Authorization value for user and pass.
func BasicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func writeStatus(c net.Conn, code int, extra, body string) {
	body += "\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), extra, len(body), body)
}

// connect opens the tunnel: dial, 200 (+ extra headers, + early bytes), relay.
func (u *TestUpstream) connect(c net.Conn, br *bufio.Reader, req *http.Request) {
	target, err := net.DialTimeout("tcp", req.Host, 10*time.Second)
	if err != nil {
		writeStatus(c, 502, "", "upstream could not reach the target: "+err.Error())
		return
	}
	if !u.set.track(target) {
		target.Close()
		return
	}
	defer u.set.untrack(target)
	defer target.Close()

	u.mu.Lock()
	var head []byte
	head = append(head, "HTTP/1.1 200 Connection established\r\n"...)
	for _, l := range u.extra {
		head = append(head, l...)
		head = append(head, "\r\n"...)
	}
	head = append(head, "\r\n"...)
	head = append(head, u.early...)
	u.mu.Unlock()
	if _, err := c.Write(head); err != nil {
		return
	}
	Relay(c, br, target)
}

// Relay copies a→b and b→a until both directions are done. ar is what to read
// from a (a itself, or a bufio.Reader holding bytes already read from a).
// When one side sends FIN, the other side is half-closed (CloseWrite) and the
// other direction keeps flowing; on any error both connections are closed.
func Relay(a net.Conn, ar io.Reader, b net.Conn) {
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
	go pipe(a, b)
	wg.Wait()
}

// hopByHop are the headers a proxy does not forward (RFC 9110 §7.6.1).
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// forward serves one absolute-form request by passing it to the origin and
// streaming the response back. It returns whether the client connection may
// serve another request.
func (u *TestUpstream) forward(c net.Conn, br *bufio.Reader, req *http.Request) bool {
	if req.URL.Scheme != "http" || req.URL.Host == "" {
		writeStatus(c, 400, "", "TestUpstream wants absolute-form http:// requests")
		return false
	}
	var body io.Reader = http.NoBody
	chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
	switch {
	case chunked:
		body = httputil.NewChunkedReader(br)
	case req.ContentLength > 0:
		body = io.LimitReader(br, req.ContentLength)
	}
	out, err := http.NewRequest(req.Method, req.URL.String(), io.NopCloser(body))
	if err != nil {
		writeStatus(c, 400, "", err.Error())
		return false
	}
	out.Header = req.Header.Clone()
	for _, tok := range req.Header.Values("Connection") {
		for _, name := range strings.Split(tok, ",") {
			out.Header.Del(strings.TrimSpace(name))
		}
	}
	for _, h := range hopByHop {
		out.Header.Del(h)
	}
	out.Host = req.Host
	switch {
	case chunked:
		out.ContentLength = -1
	case req.ContentLength > 0:
		out.ContentLength = req.ContentLength
	default:
		out.ContentLength = 0
		out.Body = nil
	}
	resp, err := u.transport.RoundTrip(out)
	if err != nil {
		writeStatus(c, 502, "", "upstream could not reach the origin: "+err.Error())
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, body) // whatever of the request body the origin left unread

	bw := bufio.NewWriterSize(c, 32<<10)
	fmt.Fprintf(bw, "HTTP/1.1 %s\r\n", resp.Status)
	for _, h := range hopByHop {
		resp.Header.Del(h)
	}
	resp.Header.Del("Content-Length")
	noBody := req.Method == http.MethodHead || resp.StatusCode/100 == 1 || resp.StatusCode == 204 || resp.StatusCode == 304
	switch {
	case noBody:
		if req.Method == http.MethodHead && resp.ContentLength >= 0 {
			resp.Header.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
	case resp.ContentLength >= 0:
		resp.Header.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	default:
		resp.Header.Set("Transfer-Encoding", "chunked")
	}
	if req.Close {
		resp.Header.Set("Connection", "close")
	}
	if err := resp.Header.Write(bw); err != nil {
		return false
	}
	bw.WriteString("\r\n")
	if !noBody {
		if resp.ContentLength >= 0 {
			if _, err := io.Copy(bw, resp.Body); err != nil {
				return false
			}
		} else {
			cw := httputil.NewChunkedWriter(bw)
			if _, err := io.Copy(cw, resp.Body); err != nil {
				return false
			}
			cw.Close()
			bw.WriteString("\r\n")
		}
	}
	if err := bw.Flush(); err != nil {
		return false
	}
	return !req.Close
}

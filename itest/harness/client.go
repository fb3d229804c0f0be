package harness

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Client is a raw TCP client of a proxy: write any bytes, read a response
// head, then use the connection as a tunnel. Reads go through R so that bytes
// that arrived with the response head are not lost. Over TLS (DialTLS),
// writes, reads and CloseWrite go through the session.
type Client struct {
	Conn *net.TCPConn
	// TLS is the session of a Client from DialTLS or ClientTLS, else nil.
	TLS *tls.Conn
	R   *bufio.Reader
	t   TB
}

// w is where the client's bytes go: the TLS session, or the connection.
func (c *Client) w() io.Writer {
	if c.TLS != nil {
		return c.TLS
	}
	return c.Conn
}

// DefaultDeadline bounds every Client connection unless SetDeadline says
// otherwise.
const DefaultDeadline = 2 * time.Minute

// Dial connects to addr with a DefaultDeadline on the connection; it is closed
// in t.Cleanup.
func Dial(t TB, addr string) *Client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("harness: dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(DefaultDeadline))
	t.Cleanup(func() { c.Close() })
	return &Client{Conn: c.(*net.TCPConn), R: bufio.NewReaderSize(c, 64<<10), t: t}
}

// Write writes b and fails the test on error.
func (c *Client) Write(b []byte) {
	c.t.Helper()
	if _, err := c.w().Write(b); err != nil {
		c.t.Fatalf("harness: client write: %v", err)
	}
}

// WriteString writes s and fails the test on error.
func (c *Client) WriteString(s string) { c.Write([]byte(s)) }

// Read reads from the tunnel (via R).
func (c *Client) Read(p []byte) (int, error) { return c.R.Read(p) }

// ReadFull reads exactly n bytes from the tunnel and fails the test otherwise.
func (c *Client) ReadFull(n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.R, b); err != nil {
		c.t.Fatalf("harness: client read %d bytes: %v (got %q)", n, err, b)
	}
	return b
}

// CloseWrite sends FIN (over TLS: close_notify, which proxyto takes as one).
func (c *Client) CloseWrite() {
	c.t.Helper()
	if c.TLS != nil {
		if err := c.TLS.CloseWrite(); err != nil {
			c.t.Fatalf("harness: client CloseWrite: %v", err)
		}
		return
	}
	if err := c.Conn.CloseWrite(); err != nil {
		c.t.Fatalf("harness: client CloseWrite: %v", err)
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.Conn.Close() }

// SetDeadline replaces the connection's deadline.
func (c *Client) SetDeadline(d time.Duration) { c.Conn.SetDeadline(time.Now().Add(d)) }

// ReadResponse reads one response head for a request with the given method.
// For a 2xx answer to CONNECT the body is left unread: the connection is then
// the tunnel. For other answers the caller may read resp.Body.
func (c *Client) ReadResponse(method string) (*http.Response, error) {
	return http.ReadResponse(c.R, &http.Request{Method: method})
}

// HeadDeadline bounds the wait for a response head in Tunnel and
// ReadResponseWithin callers: proxyto answers on loopback in milliseconds, so
// this only matters when it is broken, and then it keeps a table of cases
// from using up the test binary's timeout.
const HeadDeadline = 30 * time.Second

// ReadResponseWithin is ReadResponse with the connection's deadline set to d
// for the read, then back to DefaultDeadline.
func (c *Client) ReadResponseWithin(method string, d time.Duration) (*http.Response, error) {
	c.SetDeadline(d)
	defer c.SetDeadline(DefaultDeadline)
	return c.ReadResponse(method)
}

// MustResponse is ReadResponse (bounded by HeadDeadline) that fails the test
// on error.
func (c *Client) MustResponse(method string) *http.Response {
	c.t.Helper()
	resp, err := c.ReadResponseWithin(method, HeadDeadline)
	if err != nil {
		c.t.Fatalf("harness: reading %s response: %v", method, err)
	}
	return resp
}

// ReadBody reads and returns the whole body of a non-tunnel response.
func ReadBody(t TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("harness: reading body: %v", err)
	}
	return string(b)
}

// ConnectHead returns a CONNECT request head for target with Host and the
// given extra header lines ("Name: value"); xProxyTo is sent as X-Proxy-To
// unless empty.
func ConnectHead(target, xProxyTo string, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if xProxyTo != "" {
		fmt.Fprintf(&b, "X-Proxy-To: %s\r\n", xProxyTo)
	}
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// Tunnel dials proxyAddr, sends a CONNECT to target with X-Proxy-To xProxyTo,
// and fails the test unless the answer is 200. It returns the client, ready
// to use as a tunnel, and the response.
func Tunnel(t TB, proxyAddr, target, xProxyTo string, lines ...string) (*Client, *http.Response) {
	t.Helper()
	c := Dial(t, proxyAddr)
	c.WriteString(ConnectHead(target, xProxyTo, lines...))
	resp := c.MustResponse(http.MethodConnect)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("harness: CONNECT %s via %s: got %s, want 200\n%s", target, xProxyTo, resp.Status, body)
	}
	return c, resp
}

// EchoRoundTrip writes msg into the tunnel and expects the same bytes back
// (the tunnel must lead to an echo origin).
func (c *Client) EchoRoundTrip(msg string) {
	c.t.Helper()
	c.WriteString(msg)
	if got := string(c.ReadFull(len(msg))); got != msg {
		c.t.Fatalf("harness: echo: got %q, want %q", got, msg)
	}
}

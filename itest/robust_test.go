package itest

// Robustness: hostile or broken clients must get a 4xx or a closed
// connection, never a hang, and must not disturb anyone else's tunnel.

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// wantRejectOrClose reads what proxyto answers on c: either a response with
// one of the statuses in ok (then Proxy-Status must name errType), or the
// connection closed (EOF or reset). A read timeout — proxyto neither answering
// nor closing within the generous deadline — fails the test.
func wantRejectOrClose(t *testing.T, c *harness.Client, errType string, ok ...int) {
	t.Helper()
	resp, err := c.ReadResponseWithin(http.MethodConnect, harness.HeadDeadline)
	switch {
	case err == nil:
		for _, s := range ok {
			if resp.StatusCode == s {
				wantProxyError(t, resp, s, errType, 0)
				return
			}
		}
		t.Fatalf("answered %s, want one of %v or a closed connection", resp.Status, ok)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("proxyto neither answered nor closed the connection: %v", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), harness.IsReset(err):
		// closed: fine
	default:
		t.Fatalf("reading the answer: %v", err)
	}
}

// TestGarbageBytes: bytes that are not HTTP get a 400 or a closed connection,
// and proxyto keeps serving.
func TestGarbageBytes(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)

	for _, tc := range []struct {
		name string
		data string
		fin  bool // client half-closes after writing
	}{
		{"binary then blank line", "\x00\x01\x02\xff\xfe garbage \x80\x81\r\n\r\n", false},
		{"TLS ClientHello then FIN", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 64), true},
		{"request line without version", "CONNECT " + echo.Addr + "\r\n\r\n", false},
		{"bad token in method", "CON(NECT " + echo.Addr + " HTTP/1.1\r\n\r\n", false},
		{"header without colon", "CONNECT " + echo.Addr + " HTTP/1.1\r\nX-Proxy-To " + up.Addr + "\r\n\r\n", false},
		{"NUL in header", "CONNECT " + echo.Addr + " HTTP/1.1\r\nX-Proxy-To: " + up.Addr + "\r\nX-A: b\x00c\r\n\r\n", false},
		{"space before colon", "CONNECT " + echo.Addr + " HTTP/1.1\r\nX-Proxy-To : " + up.Addr + "\r\n\r\n", false},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := harness.Dial(t, p.Addr)
			c.WriteString(tc.data)
			if tc.fin {
				c.CloseWrite()
			}
			wantRejectOrClose(t, c, "http_request_error", 400)
		})
	}
	if n := up.Conns(); n != 0 {
		t.Errorf("garbage reached the upstream (%d connections)", n)
	}
	tunnelWorks(t, p, up, echo)
}

// TestHalfHeadThenClientVanishes: clients that send half a head and then go
// away (FIN or RST) do not disturb a tunnel already open on the same proxyto,
// and new tunnels still work.
func TestHalfHeadThenClientVanishes(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)

	open, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	open.EchoRoundTrip("before")

	half := "CONNECT " + echo.Addr + " HTTP/1.1\r\nHost: " + echo.Addr + "\r\nX-Proxy-To: 127.0"
	for i := 0; i < 20; i++ {
		c := harness.Dial(t, p.Addr)
		c.WriteString(half)
		if i%2 == 1 {
			c.Conn.SetLinger(0) // close with RST
		}
		c.Close()
	}

	open.EchoRoundTrip("the open tunnel keeps working")
	select {
	case <-p.Done():
		t.Fatalf("proxyto exited")
	default:
	}
	tunnelWorks(t, p, up, echo)
	if n := up.Requests(); n != 2 {
		t.Errorf("upstream saw %d CONNECTs, want 2 (half heads must not be forwarded)", n)
	}
}

// TestHugeHeader: a 1 MB header gets 431 or a closed connection, and proxyto
// keeps serving.
func TestHugeHeader(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)

	c := harness.Dial(t, p.Addr)
	c.SetDeadline(time.Minute)
	head := harness.ConnectHead(echo.Addr, up.Addr, "X-Huge: "+strings.Repeat("h", 1<<20))
	writeErr := make(chan error, 1)
	go func() {
		// proxyto may stop reading and close long before all of it is sent.
		_, err := c.Conn.Write([]byte(head))
		writeErr <- err
	}()
	wantRejectOrClose(t, c, "http_request_error", 431)
	c.Close()
	if err := <-writeErr; err != nil && !harness.IsReset(err) && !errors.Is(err, net.ErrClosed) {
		t.Logf("write of the huge head ended with %v", err)
	}
	if n := up.Conns(); n != 0 {
		t.Errorf("the huge head reached the upstream")
	}
	tunnelWorks(t, p, up, echo)
}

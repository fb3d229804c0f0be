package engine_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/engine"
)

// Timeouts are short and waits generous: these tests check that a timeout
// fires, never how fast.
const short = 300 * time.Millisecond

func TestInprocTimeouts(t *testing.T) {
	echo := startEcho(t)
	silent := startSilent(t)
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)

	t.Run("ClientHeaderTimeout", func(t *testing.T) {
		te := startEngine(t, engine.Config{ClientHeaderTimeout: short})
		c := dialClient(t, te.addr)
		c.write("GET http://" + oh + "/echo HTTP/1.1\r\nHost: " + oh + "\r\n") // half a head
		c.expectClosed("half a request head")
	})

	t.Run("ResponseHeaderTimeout", func(t *testing.T) {
		te := startEngine(t, engine.Config{ResponseHeaderTimeout: short})
		for _, method := range []string{"GET", "CONNECT"} {
			t.Run(method, func(t *testing.T) {
				c := dialClient(t, te.addr)
				var r *response
				if method == "GET" {
					r = c.roundTrip("GET", get(oh, "/echo", silent))
				} else {
					r = c.roundTrip("CONNECT", connectReq(echo, silent))
				}
				checkProxyError(t, r, 504, "http_response_timeout")
			})
		}
	})

	t.Run("TunnelIdleTimeout", func(t *testing.T) {
		te := startEngine(t, engine.Config{TunnelIdleTimeout: short})
		c := openTunnel(t, te.addr, echo, up.addr)
		c.echoCheck("one exchange, then silence")
		c.expectClosed("idle tunnel")
		st := te.rec.settled(t)
		if len(st.records) != 1 || st.records[0].kind != engine.KindConnect || st.records[0].status != 200 {
			t.Errorf("records %+v", st.records)
		}
	})

	t.Run("IdleTimeout", func(t *testing.T) {
		te := startEngine(t, engine.Config{IdleTimeout: short})
		c := dialClient(t, te.addr)
		if r := c.roundTrip("GET", get(oh, "/echo", up.addr)); r.StatusCode != 200 {
			t.Fatalf("status %d", r.StatusCode)
		}
		c.expectClosed("idle kept-alive connection")
	})
}

// TestInprocShutdownDrain: Shutdown refuses new connections, closes or
// refuses idle ones, lets an active tunnel finish, then returns nil.
func TestInprocShutdownDrain(t *testing.T) {
	echo := startEcho(t)
	origin := startOrigin(t)
	oh := originHost(origin)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})

	tun := openTunnel(t, te.addr, echo, up.addr)
	tun.echoCheck("before the drain")
	idle := dialClient(t, te.addr)
	if r := idle.roundTrip("GET", get(oh, "/echo", up.addr)); r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	if !te.Ready() {
		t.Fatal("not Ready before Shutdown")
	}

	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
		defer cancel()
		errc <- te.shutdown(ctx)
	}()
	eventually(t, "Ready() to turn false", func() bool { return !te.Ready() })

	// New connections are refused.
	eventually(t, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", te.addr, time.Second)
		if err != nil {
			return true
		}
		_ = c.Close()
		return false
	})

	// A new request on the idle kept-alive connection: 503 or closed.
	_, werr := io.WriteString(idle.c, get(oh, "/echo", up.addr))
	if werr == nil {
		r, err := idle.read("GET")
		switch {
		case err != nil:
			// closed: fine
		case r.StatusCode == 503:
			checkProxyError(t, r, 503, "proxy_internal_response")
		default:
			t.Errorf("request on an idle connection while draining: status %d", r.StatusCode)
		}
	}

	// The tunnel still works, until its client ends it.
	select {
	case err := <-errc:
		t.Fatalf("Shutdown returned %v with a tunnel open", err)
	default:
	}
	tun.echoCheck("during the drain")
	if err := echoN(tun, 1<<20, 3); err != nil {
		t.Fatalf("tunnel during the drain: %v", err)
	}
	_ = tun.c.Close()

	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(2 * waitLong):
		t.Fatal("Shutdown did not return after the last tunnel closed")
	}
	if te.Ready() {
		t.Error("Ready after Shutdown")
	}
}

// TestInprocShutdownDeadline: a tunnel open past the drain deadline makes
// Shutdown return an error, but return.
func TestInprocShutdownDeadline(t *testing.T) {
	echo := startEcho(t)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	tun := openTunnel(t, te.addr, echo, up.addr)
	tun.echoCheck("open")

	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), short)
		defer cancel()
		errc <- te.shutdown(ctx)
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Shutdown returned nil with a tunnel open past its deadline")
		}
		t.Logf("Shutdown: %v", err)
	case <-time.After(2 * waitLong):
		t.Fatal("Shutdown did not return after its deadline")
	}
	// The engine is stopped: the tunnel's client sees the end.
	_ = tun.c.SetReadDeadline(time.Now().Add(waitLong))
	_, err := io.Copy(io.Discard, tun.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Error("tunnel still open after Shutdown returned")
	}
}

// TestInprocShutdownInFlight: a request in flight when the drain starts gets
// its response, marked Connection: close.
func TestInprocShutdownInFlight(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slow := startTCP(t, func(c *net.TCPConn) {
		// A tiny origin: read the head, wait, answer.
		buf := make([]byte, 4096)
		var head []byte
		for !strings.Contains(string(head), "\r\n\r\n") {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			head = append(head, buf[:n]...)
		}
		arrived <- struct{}{}
		select {
		case <-release:
		case <-time.After(waitLong):
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
	})
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	c := dialClient(t, te.addr)
	c.write(get(slow, "/", up.addr))
	select {
	case <-arrived:
	case <-time.After(waitLong):
		t.Fatal("request never reached the origin")
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
		defer cancel()
		errc <- te.shutdown(ctx)
	}()
	eventually(t, "draining", func() bool { return !te.Ready() })
	close(release)
	r := c.mustRead("GET")
	if r.StatusCode != 200 || string(r.body) != "done" {
		t.Fatalf("in-flight response: %d %q", r.StatusCode, r.body)
	}
	if !r.Close {
		t.Error("in-flight response while draining lacks Connection: close")
	}
	c.expectClosed("connection after the in-flight response")
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(2 * waitLong):
		t.Fatal("Shutdown did not return")
	}
}

// TestInprocShutdownHalfClosedTunnel: a tunnel whose client has sent its FIN
// is still in flight (the reply has yet to come back); the drain must wait
// for it instead of stopping the loops under it.
func TestInprocShutdownHalfClosedTunnel(t *testing.T) {
	const n = 1 << 20
	gotEOF := make(chan struct{})
	release := make(chan struct{})
	target := startTCP(t, func(c *net.TCPConn) {
		_, _ = io.Copy(io.Discard, c)
		close(gotEOF)
		select {
		case <-release:
		case <-time.After(waitLong):
		}
		_, _ = io.Copy(c, newPattern(n, 21))
		_ = c.CloseWrite()
	})
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	tun := openTunnel(t, te.addr, target, up.addr)
	tun.write("request")
	if err := tun.c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gotEOF:
	case <-time.After(waitLong):
		t.Fatal("target never saw the client's FIN")
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
		defer cancel()
		errc <- te.shutdown(ctx)
	}()
	// Let the drain run for a while (or return early, which is the bug),
	// then let the reply go.
	var early error
	returnedEarly := false
	select {
	case early = <-errc:
		returnedEarly = true
	case <-time.After(2 * time.Second):
	}
	close(release)
	h := sha256.New()
	got, err := io.Copy(h, tun.br)
	if got != n || sumOf(h) != hashOf(n, 21) {
		t.Errorf("reply after the client's FIN, during the drain: %d of %d bytes (read error %v); Shutdown returned before the reply: %v (%v)",
			got, n, err, returnedEarly, early)
	}
	if !returnedEarly {
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		case <-time.After(2 * waitLong):
			t.Fatal("Shutdown did not return")
		}
	}
}

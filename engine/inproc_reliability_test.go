package engine_test

// Reliability regressions: upstreams that close kept-alive-looking
// connections right after answering (Debian's tinyproxy 1.11 does), and
// CONNECT clients that send early data and a FIN before the 200.

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/itest/harness"
)

// closingUpstream answers every absolute-form request with a 200 that looks
// reusable (Content-Length, no Connection: close) and echoes the request
// body's length and checksum, then closes the connection closeAfter later.
type closingUpstream struct {
	addr       string
	closeAfter atomic.Int64 // nanoseconds
	accepted   atomic.Int64
	answered   atomic.Int64
	lastErr    atomic.Value // string: the last request it could not read whole
}

func startClosingUpstream(t *testing.T, closeAfter time.Duration) *closingUpstream {
	u := &closingUpstream{}
	u.closeAfter.Store(int64(closeAfter))
	u.addr = startTCP(t, func(c *net.TCPConn) {
		u.accepted.Add(1)
		br := bufio.NewReader(c)
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			u.lastErr.Store(fmt.Sprintf("%s body after %d bytes: %v", r.Method, len(body), err))
			return
		}
		msg := fmt.Sprintf("%s %d %x", r.Method, len(body), sha256.Sum256(body))
		// Counted before the answer leaves: a client that read it may check
		// the count at once.
		u.answered.Add(1)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
		time.Sleep(time.Duration(u.closeAfter.Load()))
	})
	return u
}

// TestInprocPoolUpstreamClosesAfterEveryResponse: requests with bodies on
// fresh client connections, back to back, through an upstream that closes
// every connection just after its response; none may fail, whatever the
// delay of the close.
func TestInprocPoolUpstreamClosesAfterEveryResponse(t *testing.T) {
	const perDelay = 250
	delays := []time.Duration{0, 200 * time.Microsecond, time.Millisecond, 3 * time.Millisecond}
	origin := "origin.test"
	methods := []string{"PUT", "PATCH", "POST"}
	for _, d := range delays {
		t.Run(d.String(), func(t *testing.T) {
			up := startClosingUpstream(t, d)
			te := startEngine(t, engine.Config{Loops: 1, ResponseHeaderTimeout: 5 * time.Second})
			for i := range perDelay {
				m := methods[i%len(methods)]
				body := strings.Repeat(fmt.Sprintf("%s-%d;", m, i), 1+i%400) // up to ~4 KiB
				c := dialClient(t, te.addr)
				r := c.roundTrip(m, req(m, "http://"+origin+"/x", origin, up.addr,
					fmt.Sprintf("Content-Length: %d\r\n", len(body)))+body)
				want := fmt.Sprintf("%s %d %x", m, len(body), sha256.Sum256([]byte(body)))
				if r.StatusCode != 200 || string(r.body) != want {
					t.Fatalf("request %d (%s, close after %v): %d %q, Proxy-Status %q; want 200 %q (upstream: %v)",
						i, m, d, r.StatusCode, r.body, r.Header.Get("Proxy-Status"), want, up.lastErr.Load())
				}
				_ = c.c.Close()
			}
			// The upstream counts an answer after writing it: wait for the last.
			eventually(t, "the upstream to count its answers", func() bool { return up.answered.Load() >= perDelay })
			if got := up.answered.Load(); got != perDelay {
				t.Errorf("upstream answered %d requests, want %d (each exactly once)", got, perDelay)
			}
		})
	}
}

// TestInprocPoolLearnsUpstreamCloses: an upstream that closes each
// connection 50 ms after its response, to clients that send their next
// request at once: every reuse fails and is retried, until the pool learns
// (after a few closes in a row) to stop offering that upstream's
// connections.
func TestInprocPoolLearnsUpstreamCloses(t *testing.T) {
	up := startClosingUpstream(t, 50*time.Millisecond)
	te := startEngine(t, engine.Config{Loops: 1})
	c := dialClient(t, te.addr)
	const n = 20
	for i := range n {
		r := c.roundTrip("GET", get("origin.test", fmt.Sprintf("/%d", i), up.addr))
		if r.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, r.StatusCode, r.Header.Get("Proxy-Status"))
		}
	}
	st := te.rec.snapshot()
	if st.poolHits > 3 {
		t.Errorf("pool hits %d, want at most 3: the pool should stop offering an upstream that closes after every response", st.poolHits)
	}
	if got, want := up.answered.Load(), int64(n); got != want {
		t.Errorf("upstream answered %d requests, want %d", got, want)
	}
}

// TestInprocPoolRetryWithBody: a reused connection the upstream closes as a
// POST arrives is retried on a fresh connection with the whole body.
func TestInprocPoolRetryWithBody(t *testing.T) {
	origin := startOrigin(t)
	oh := originHost(origin)
	for _, size := range []int{1, 1000, 60 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			up := startProxy(t, nil)
			te := startEngine(t, engine.Config{Loops: 1})
			c := dialClient(t, te.addr)
			if r := c.roundTrip("GET", get(oh, "/echo?first", up.addr)); r.StatusCode != 200 {
				t.Fatalf("first: %d", r.StatusCode)
			}
			up.DropReused(1)
			body := strings.Repeat("b", size)
			r := c.roundTrip("POST", req("POST", "http://"+oh+"/echo", oh, up.addr, fmt.Sprintf("Content-Length: %d\r\n", size))+body)
			if r.StatusCode != 200 || r.Header.Get("X-Body-Len") != fmt.Sprint(size) ||
				r.Header.Get("X-Body-Sha256") != fmt.Sprintf("%x", sha256.Sum256([]byte(body))) {
				t.Fatalf("POST on a reused connection the upstream closed: %d %s len %s", r.StatusCode, r.Header.Get("Proxy-Status"), r.Header.Get("X-Body-Len"))
			}
			if got := up.Conns(); got != 2 {
				t.Errorf("upstream accepted %d, want 2 (one retry)", got)
			}
		})
	}
}

// TestInprocConnectEarlyDataEarlyFIN: a client sends its CONNECT head, the
// first bytes of its protocol, and a FIN, all before the 200. It gets the
// 200, the upstream gets the bytes and then the FIN, and the client gets the
// reply and then the upstream's FIN. Each case puts the FIN at another
// moment of the set-up.
func TestInprocConnectEarlyDataEarlyFIN(t *testing.T) {
	echo := startEcho(t)
	t.Run("with the head", func(t *testing.T) {
		up := startProxy(t, nil)
		te := startEngine(t, engine.Config{})
		for i := range 30 {
			c := dialClient(t, te.addr)
			c.write(connectReq(echo, up.addr) + fmt.Sprintf("hello-%d", i))
			_ = c.c.CloseWrite()
			expectEarlyEcho(t, c, fmt.Sprintf("hello-%d", i))
		}
		te.rec.settled(t)
	})
	t.Run("during the dial", func(t *testing.T) {
		// Client credentials verified off the loop (bcrypt-like) hold the
		// dial until the FIN was sent.
		up := startProxy(t, nil)
		a := &gateAuth{gate: make(chan struct{})}
		te := startEngine(t, engine.Config{Auth: a})
		c := dialClient(t, te.addr)
		c.write(connectReq(echo, up.addr, "Proxy-Authorization: "+basic("alice", "slow")+"\r\n") + "early")
		_ = c.c.CloseWrite()
		eventually(t, "Verify to start", func() bool { return a.started.Load() })
		close(a.gate)
		expectEarlyEcho(t, c, "early")
	})
	t.Run("during the upstream handshake", func(t *testing.T) {
		gotHead := make(chan struct{})
		release := make(chan struct{})
		upAddr := startTCP(t, func(c *net.TCPConn) {
			br := bufio.NewReader(c)
			r, err := http.ReadRequest(br)
			if err != nil || r.Method != http.MethodConnect {
				return
			}
			close(gotHead)
			<-release
			tc, err := net.Dial("tcp", r.Host)
			if err != nil {
				return
			}
			defer tc.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
			harness.Relay(c, br, tc, tc)
		})
		te := startEngine(t, engine.Config{})
		c := dialClient(t, te.addr)
		c.write(connectReq(echo, upAddr) + "during")
		<-gotHead
		_ = c.c.CloseWrite()
		close(release)
		expectEarlyEcho(t, c, "during")
	})
}

// expectEarlyEcho reads the 200, then want echoed back, then EOF.
func expectEarlyEcho(t *testing.T, c *client, want string) {
	t.Helper()
	r := c.mustRead("CONNECT")
	if r.StatusCode != 200 {
		t.Fatalf("CONNECT with early FIN: status %d %s", r.StatusCode, r.Header.Get("Proxy-Status"))
	}
	got, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	if string(got) != want {
		t.Fatalf("reply %q, want %q followed by EOF", got, want)
	}
}

// gateAuth accepts every credential, but only once gate is closed: Verify
// runs in the dial job, so the dial waits for the test.
type gateAuth struct {
	gate    chan struct{}
	started atomic.Bool
}

func (a *gateAuth) CachedUser(_, _ []byte) (ok, known bool) { return false, false }
func (a *gateAuth) UserID([]byte) int                       { return -1 }
func (a *gateAuth) VerifyUser(_, _ []byte) bool {
	a.started.Store(true)
	<-a.gate
	return true
}

package itest

// What the TLS listener costs beside the plain one, measured through the
// binary: proxyto's CPU per keep-alive request, per tunnel (handshake
// included) and per MiB relayed, and its memory per idle tunnel. Not a
// test of behaviour: it runs only with PROXYTO_COST=1 and reports numbers
// (t.Log), asserting nothing about them.
//
//	PROXYTO_COST=1 go test ./itest -run TestClientSideCost -v -timeout 20m

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// procCPU is the user+system CPU time of process pid so far.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// costDial opens a client connection to p's plain or TLS listener.
func costDial(t *testing.T, p *harness.Proxyto, ca *harness.TestCA, useTLS bool) *harness.Client {
	if useTLS {
		c, _ := harness.DialTLS(t, p.TLSAddr, ca)
		return c
	}
	return harness.Dial(t, p.Addr)
}

// parallel runs f(i) for i in [0, n) on w workers.
func parallel(n, w int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func TestClientSideCost(t *testing.T) {
	if os.Getenv("PROXYTO_COST") != "1" {
		t.Skip("set PROXYTO_COST=1 to measure")
	}
	ca := harness.NewTestCA(t)
	origin := harness.StartWireOrigin(t)
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	const (
		conns, reqs = 4, 5000 // keep-alive requests per connection
		tunnels     = 2000
		bulkMiB     = 128 // each way
		idle        = 2000
	)
	get := "GET http://" + origin.Addr + "/small HTTP/1.1\r\nHost: " + origin.Addr + "\r\nX-Proxy-To: " + up.Addr + "\r\n\r\n"
	var report []string
	for _, useTLS := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "TLS"}[useTLS]
		p, _ := tlsProxyto(t, ca)
		defer func() {
			if t.Failed() {
				out := p.Output()
				t.Logf("%s proxyto output (tail): %s", name, out[max(0, len(out)-6000):])
			}
		}()

		// Keep-alive requests (connections opened before counting).
		cs := make([]*harness.Client, conns)
		for i := range cs {
			cs[i] = costDial(t, p, ca, useTLS)
		}
		cpu0 := procCPU(t, p.PID)
		parallel(conns, conns, func(i int) {
			c := cs[i]
			for range reqs {
				c.WriteString(get)
				resp, err := http.ReadResponse(c.R, nil)
				if err != nil {
					t.Errorf("%s request: %v", name, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
		perReq := (procCPU(t, p.PID) - cpu0) / (conns * reqs)
		for _, c := range cs {
			c.Close()
		}

		// Tunnels: connect (and handshake), CONNECT, one round trip, close.
		cpu0 = procCPU(t, p.PID)
		parallel(tunnels, 4, func(int) {
			c := costDial(t, p, ca, useTLS)
			c.SetDeadline(20 * time.Second)
			c.WriteString(harness.ConnectHead(echo.Addr, up.Addr))
			if resp, err := http.ReadResponse(c.R, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
				t.Errorf("%s CONNECT: %v %v", name, err, status(resp))
				return
			}
			c.WriteString("ping\n")
			if _, err := c.R.ReadString('\n'); err != nil {
				t.Errorf("%s tunnel: %v", name, err)
			}
			c.Close()
		})
		perTunnel := (procCPU(t, p.PID) - cpu0) / tunnels

		// Bulk: bulkMiB each way through one tunnel to the echo origin.
		c := costDial(t, p, ca, useTLS)
		c.WriteString(harness.ConnectHead(echo.Addr, up.Addr))
		if resp, err := http.ReadResponse(c.R, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v", err)
		}
		cpu0 = procCPU(t, p.PID)
		done := make(chan error, 1)
		go func() {
			_, err := io.CopyN(io.Discard, c.R, bulkMiB<<20)
			done <- err
		}()
		w := bufio.NewWriterSize(writerOf(c), 64<<10)
		if _, err := io.Copy(w, harness.PatternReader(bulkMiB<<20)); err != nil || w.Flush() != nil {
			t.Fatalf("bulk write: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("bulk read: %v", err)
		}
		perMiB := (procCPU(t, p.PID) - cpu0) / (2 * bulkMiB)
		c.Close()

		// Idle tunnels, in a fresh process.
		q, _ := tlsProxyto(t, ca)
		for range 3 { // warm: loops, pools, first goroutines
			c := costDial(t, q, ca, useTLS)
			c.WriteString(harness.ConnectHead(echo.Addr, up.Addr))
			_, _ = http.ReadResponse(c.R, &http.Request{Method: http.MethodConnect})
			c.Close()
		}
		time.Sleep(500 * time.Millisecond)
		rss0 := q.MustRSS(t)
		held := make([]*harness.Client, idle)
		parallel(idle, 8, func(i int) {
			c := costDial(t, q, ca, useTLS)
			c.WriteString(harness.ConnectHead(echo.Addr, up.Addr))
			if resp, err := http.ReadResponse(c.R, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
				t.Errorf("%s CONNECT: %v %v", name, err, status(resp))
				return
			}
			c.WriteString("ping\n")
			if _, err := c.R.ReadString('\n'); err != nil {
				t.Error(err)
			}
			held[i] = c
		})
		time.Sleep(3 * time.Second) // past the bridge's idle release
		perIdle := float64(q.MustRSS(t)-rss0) / idle / 1024
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
		t.Logf("%s done", name)
		report = append(report, fmt.Sprintf("%-5s  CPU %6.1f µs/request  %7.1f µs/tunnel  %7.1f µs/MiB   %5.1f KiB/idle tunnel (RSS %d MiB → +%d MiB)",
			name, us(perReq), us(perTunnel), us(perMiB), perIdle, rss0>>20, (q.MustRSS(t)-rss0)>>20))
	}
	t.Logf("proxyto through the plain and the TLS listener (%d CPUs, ECDSA P-256, TLS 1.3, no resumption):\n%s",
		runtime.NumCPU(), strings.Join(report, "\n"))
}

func status(r *http.Response) string {
	if r == nil {
		return ""
	}
	return r.Status + " " + r.Header.Get("Proxy-Status")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// writerOf is where a client's bytes go, without the test-failing Write.
func writerOf(c *harness.Client) io.Writer {
	if c.TLS != nil {
		return c.TLS
	}
	return c.Conn
}

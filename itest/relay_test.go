package itest

// Relay regressions (a tunnel "relays bytes both ways until both sides are
// done", §3 "memory stays bounded"). They assert bytes, checksums and RSS
// bounds, never timings: the slow sides are slow only to force backpressure.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// rssGrowthLimit is how far proxyto's RSS may rise over its warmed-up
// baseline while relaying far more than that: it must apply backpressure
// rather than buffer.
const rssGrowthLimit = 64 << 20

// relayDeadline bounds each bulk tunnel; the slow sides need seconds, a loaded
// machine several times that.
const relayDeadline = 5 * time.Minute

// size returns n, or n/4 under -short.
func size(n int64) int64 {
	if testing.Short() {
		return n / 4
	}
	return n
}

// rssWatch samples proxyto's RSS until stopped and keeps the maximum.
type rssWatch struct {
	p        *harness.Proxyto
	baseline int64
	max      atomic.Int64
	stop     chan struct{}
	done     chan struct{}
}

// watchRSS warms proxyto up with one tunnel round trip (so lazily allocated
// buffers and goroutines count in the baseline), records the baseline and
// starts sampling.
func watchRSS(t *testing.T, p *harness.Proxyto, up *harness.WireUpstream, echo *harness.RawOrigin) *rssWatch {
	t.Helper()
	if os.Getenv("PROXYTO_ITEST_RACE") == "1" {
		t.Skip("RSS bounds do not hold for a -race build of proxyto")
	}
	tunnelWorks(t, p, up, echo)
	w := &rssWatch{p: p, baseline: p.MustRSS(t), stop: make(chan struct{}), done: make(chan struct{})}
	w.max.Store(w.baseline)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
				if n, err := p.RSS(); err == nil && n > w.max.Load() {
					w.max.Store(n)
				}
			}
		}
	}()
	return w
}

// check stops sampling and fails the test if RSS grew more than the limit.
func (w *rssWatch) check(t *testing.T, relayed int64) {
	t.Helper()
	close(w.stop)
	<-w.done
	if n, err := w.p.RSS(); err == nil && n > w.max.Load() {
		w.max.Store(n)
	}
	growth := w.max.Load() - w.baseline
	t.Logf("proxyto RSS: baseline %d MiB, max %d MiB, growth %d MiB while relaying %d MiB",
		w.baseline>>20, w.max.Load()>>20, growth>>20, relayed>>20)
	if growth > rssGrowthLimit {
		t.Errorf("proxyto RSS grew %d MiB over its baseline while relaying %d MiB; limit %d MiB (is it buffering instead of applying backpressure?)",
			growth>>20, relayed>>20, rssGrowthLimit>>20)
	}
}

// upload sends n pattern bytes into the tunnel, then FIN.
func upload(c *harness.Client, n int64) error {
	if _, err := io.Copy(c.Conn, harness.PatternReader(n)); err != nil {
		return fmt.Errorf("uploading: %w", err)
	}
	return c.Conn.CloseWrite()
}

// TestRelayFastUploaderSlowSink: 256 MiB from a fast client to a slow sink
// arrive complete (sha256 at the sink), and proxyto's RSS stays bounded.
func TestRelayFastUploaderSlowSink(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	sink := harness.StartSinkOrigin(t, harness.SinkOptions{ReadSize: 256 << 10, Pause: 5 * time.Millisecond})
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)
	w := watchRSS(t, p, up, echo)

	n := size(256 << 20)
	c, _ := harness.Tunnel(t, p.Addr, sink.Addr, creds+up.Addr)
	c.SetDeadline(relayDeadline)
	if err := upload(c, n); err != nil {
		t.Fatal(err)
	}
	r := sink.Result(t, relayDeadline)
	if r.Err != nil || r.Bytes != n || r.SHA256 != harness.PatternSHA256(n) {
		t.Fatalf("sink got %d bytes (want %d), sha256 match %v, err %v", r.Bytes, n, r.SHA256 == harness.PatternSHA256(n), r.Err)
	}
	w.check(t, n)
}

// TestRelaySlowDownloaderFastSource: a fast source and a client that reads
// slowly: every byte arrives in order (sha256), and RSS stays bounded.
func TestRelaySlowDownloaderFastSource(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	n := size(128 << 20)
	src := harness.StartSourceOrigin(t, n)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)
	w := watchRSS(t, p, up, echo)

	c, _ := harness.Tunnel(t, p.Addr, src.Addr, creds+up.Addr)
	c.SetDeadline(relayDeadline)
	h := sha256.New()
	buf := make([]byte, 128<<10)
	var got int64
	for {
		k, err := c.Read(buf)
		h.Write(buf[:k])
		got += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, n, err)
		}
		time.Sleep(5 * time.Millisecond) // rate shaping: a slow reader
	}
	if got != n || hex.EncodeToString(h.Sum(nil)) != harness.PatternSHA256(n) {
		t.Fatalf("client got %d bytes (want %d), sha256 match %v", got, n, hex.EncodeToString(h.Sum(nil)) == harness.PatternSHA256(n))
	}
	w.check(t, n)
}

// TestRelayClientFINThenRead: the client sends, half-closes, and must still
// receive the origin's whole reply, which the origin only writes after seeing
// that FIN.
func TestRelayClientFINThenRead(t *testing.T) {
	origin := harness.StartReplyAfterEOFOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)

	n := size(8 << 20)
	c, _ := harness.Tunnel(t, p.Addr, origin.Addr, creds+up.Addr)
	c.SetDeadline(relayDeadline)
	if err := upload(c, n); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c.R)
	if err != nil {
		t.Fatalf("reading the reply after our FIN: %v (got %q)", err, reply)
	}
	if want := harness.ReplyAfterEOF(n, harness.PatternSHA256(n)); string(reply) != want {
		t.Fatalf("reply %q, want %q", reply, want)
	}
	if r := origin.Result(t, time.Minute); r.Err != nil || r.Bytes != n {
		t.Fatalf("origin saw %+v", r)
	}
}

// TestRelayTargetFINFirst: the origin greets and half-closes first; the client
// reads the greeting and EOF, keeps sending, and the origin receives all of it.
func TestRelayTargetFINFirst(t *testing.T) {
	origin := harness.StartFINFirstOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)

	c, _ := harness.Tunnel(t, p.Addr, origin.Addr, creds+up.Addr)
	c.SetDeadline(relayDeadline)
	if got := string(c.ReadFull(len(harness.FINFirstGreeting))); got != harness.FINFirstGreeting {
		t.Fatalf("greeting %q", got)
	}
	if k, err := c.Read(make([]byte, 1)); k != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after the greeting: read %d bytes, %v; want EOF (the origin's FIN)", k, err)
	}
	n := size(8 << 20)
	if err := upload(c, n); err != nil {
		t.Fatalf("sending after the origin's FIN: %v", err)
	}
	r := origin.Result(t, relayDeadline)
	if r.Err != nil || r.Bytes != n || r.SHA256 != harness.PatternSHA256(n) {
		t.Fatalf("origin got %d bytes (want %d), sha256 match %v, err %v", r.Bytes, n, r.SHA256 == harness.PatternSHA256(n), r.Err)
	}
}

// TestRelayConcurrentUploadersSlowSinks: ten fast uploaders into slow sinks at
// once: every sink gets its bytes intact, and RSS growth stays bounded (ten
// tunnels must not each buffer).
func TestRelayConcurrentUploadersSlowSinks(t *testing.T) {
	const tunnels = 10
	echo := harness.StartEchoOrigin(t)
	sink := harness.StartSinkOrigin(t, harness.SinkOptions{ReadSize: 128 << 10, Pause: 5 * time.Millisecond})
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t)
	w := watchRSS(t, p, up, echo)

	n := size(48 << 20)
	want := harness.PatternSHA256(n)
	clients := make([]*harness.Client, tunnels)
	for i := range clients {
		clients[i], _ = harness.Tunnel(t, p.Addr, sink.Addr, creds+up.Addr)
		clients[i].SetDeadline(relayDeadline)
	}
	var wg sync.WaitGroup
	errs := make(chan error, tunnels)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := upload(c, n); err != nil {
				errs <- err
			}
		}()
	}
	for i := 0; i < tunnels; i++ {
		r := sink.Result(t, relayDeadline)
		if r.Err != nil || r.Bytes != n || r.SHA256 != want {
			t.Errorf("a sink got %d bytes (want %d), sha256 match %v, err %v", r.Bytes, n, r.SHA256 == want, r.Err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	w.check(t, n*tunnels)
}

// TestTunnelIdleTimeout: a tunnel in which no byte moves is closed by
// --tunnel-idle-timeout. Only that it closes is asserted (within a generous
// bound), not how fast.
func TestTunnelIdleTimeout(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--tunnel-idle-timeout", "1s")

	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, creds+up.Addr)
	c.EchoRoundTrip("hello, then silence")
	c.SetDeadline(time.Minute)
	k, err := c.Read(make([]byte, 1))
	switch {
	case k != 0:
		t.Fatalf("read %d bytes from an idle tunnel", k)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("idle tunnel still open after a minute with --tunnel-idle-timeout 1s")
	case errors.Is(err, io.EOF), harness.IsReset(err):
		// closed, as it should be
	default:
		t.Fatalf("reading the idle tunnel: %v", err)
	}
}

// TestRelayGiBBothWaysBesideIdleTunnels: one tunnel moves 1 GiB each way
// through an echo, checksummed, while 1,000 idle tunnels stay open. The bulk
// tunnel takes the splice path (kernel to kernel) and comes back; the idle
// ones keep working, and proxyto's memory stays bounded.
func TestRelayGiBBothWaysBesideIdleTunnels(t *testing.T) {
	const idle = 1000
	n := size(1 << 30)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	echo := harness.StartEchoOrigin(t)
	p := harness.StartProxyto(t)
	w := watchRSS(t, p, up, echo)
	var idlers []*harness.Client
	for i := range idle {
		c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
		c.EchoRoundTrip(fmt.Sprintf("idle %d", i))
		idlers = append(idlers, c)
	}
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	c.SetDeadline(relayDeadline)
	werr := make(chan error, 1)
	go func() { werr <- upload(c, n) }()
	h := sha256.New()
	got, err := io.Copy(h, c.Conn)
	if err != nil || got != n {
		t.Fatalf("echo: %d of %d bytes back, %v", got, n, err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != harness.PatternSHA256(n) {
		t.Fatalf("echo of %d bytes has sha256 %s, want the pattern's %s", n, sum, harness.PatternSHA256(n))
	}
	w.check(t, 2*n)
	for i, ic := range idlers {
		ic.EchoRoundTrip(fmt.Sprintf("after %d", i))
		_ = ic.Close()
	}
}

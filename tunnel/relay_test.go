package tunnel

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stream is a deterministic pseudo-random byte stream: a writer and a reader
// agree on it by seed, so gigabytes can be checked with no buffer.
func writeStream(w io.Writer, seed uint64, n int64) ([32]byte, error) {
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		_, _ = src.Read(b)
		h.Write(b)
		m, err := w.Write(b)
		n -= int64(m)
		if err != nil {
			return [32]byte{}, err
		}
	}
	return [32]byte(h.Sum(nil)), nil
}

// streamSum is the sha256 writeStream produces for seed and n.
func streamSum(seed uint64, n int64) [32]byte {
	sum, _ := writeStream(io.Discard, seed, n)
	return sum
}

// readStream reads r to EOF, calling pace (if set) between reads, and
// returns the byte count and sha256.
func readStream(r io.Reader, pace func()) (int64, [32]byte, error) {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := r.Read(buf)
		h.Write(buf[:m])
		n += int64(m)
		if err == io.EOF {
			return n, [32]byte(h.Sum(nil)), nil
		}
		if err != nil {
			return n, [32]byte(h.Sum(nil)), err
		}
		if pace != nil {
			pace()
		}
	}
}

// slowly is a reader pace that lets the writer run far ahead.
func slowly() { time.Sleep(200 * time.Microsecond) }

var testCfg = Config{HighWater: 256 << 10, LowWater: 64 << 10}

// forEachPath runs a relay test on the user-space path, on the splice path
// from the first byte, and with the switch between them after 64 KiB of
// bulk (so tunnels move mid-stream, both ways).
func forEachPath(t *testing.T, test func(t *testing.T, cfg Config)) {
	for _, p := range []struct {
		name  string
		after int
	}{{"user", 0}, {"splice", -1}, {"switch", 64 << 10}} {
		cfg := testCfg
		cfg.SpliceAfter = p.after
		t.Run(p.name, func(t *testing.T) { test(t, cfg) })
	}
}

type streamResult struct {
	n   int64
	sum [32]byte
	err error
}

func TestRelayBothWays(t *testing.T) { forEachPath(t, testRelayBothWays) }

func testRelayBothWays(t *testing.T, testCfg Config) {
	const up, down = 16 << 20, 24 << 20
	got := make(chan streamResult, 1)
	srv := startUpstream(t, func(c *net.TCPConn) error {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, sum, err := readStream(c, nil)
			got <- streamResult{n, sum, err}
		}()
		_, err := writeStream(c, 2, down)
		if err == nil {
			err = c.CloseWrite()
		}
		wg.Wait()
		return err
	})
	e := startRelayEngine(t, testCfg, srv.addr)
	c := e.dialClient(t)
	werr := make(chan error, 1)
	go func() {
		// Starts writing at once: the first bytes reach proxyto before the
		// upstream is enrolled and must be relayed by Start.
		_, err := writeStream(c, 1, up)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	n, sum, err := readStream(c, nil)
	if err != nil || n != down || sum != streamSum(2, down) {
		t.Fatalf("client received %d bytes (err %v), sha256 match %v; want %d", n, err, sum == streamSum(2, down), down)
	}
	if err := <-werr; err != nil {
		t.Fatalf("client write: %v", err)
	}
	if err := srv.result(t); err != nil {
		t.Fatalf("upstream: %v", err)
	}
	r := <-got
	if r.err != nil || r.n != up || r.sum != streamSum(1, up) {
		t.Fatalf("upstream received %d bytes (err %v), sha256 match %v; want %d", r.n, r.err, r.sum == streamSum(1, up), up)
	}
	p := e.nextPair(t)
	p.waitFinished(t)
	if p.moved[Client].Load() != up || p.moved[Upstream].Load() != down {
		t.Errorf("Moved = [%d %d], want [%d %d]", p.moved[Client].Load(), p.moved[Upstream].Load(), up, down)
	}
}

// heapWatch samples HeapInuse until stopped and reports the peak growth over
// the level at start.
func heapWatch() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	peak.Store(base)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	return func() uint64 {
		close(quit)
		<-done
		if p := peak.Load(); p > base {
			return p - base
		}
		return 0
	}
}

// TestRelayBackpressure pushes a large stream into a side that reads slowly:
// everything must arrive, and the relay must hold only about HighWater per
// direction instead of buffering what the fast side sends.
func TestRelayBackpressure(t *testing.T) { forEachPath(t, testRelayBackpressure) }

func testRelayBackpressure(t *testing.T, testCfg Config) {
	total := int64(256 << 20)
	if raceEnabled {
		total = 48 << 20
	}
	const limit = 64 << 20
	for _, dir := range []string{"upload", "download"} {
		t.Run(dir, func(t *testing.T) {
			got := make(chan streamResult, 1)
			srv := startUpstream(t, func(c *net.TCPConn) error {
				if dir == "upload" {
					n, sum, err := readStream(c, slowly)
					got <- streamResult{n, sum, err}
					return err
				}
				_, err := writeStream(c, 7, total)
				return err
			})
			e := startRelayEngine(t, testCfg, srv.addr)
			stop := heapWatch()
			c := e.dialClient(t)
			var r streamResult
			if dir == "upload" {
				_, err := writeStream(c, 7, total)
				if err == nil {
					err = c.CloseWrite()
				}
				if err != nil {
					t.Fatalf("client write: %v", err)
				}
				r = <-got
			} else {
				r.n, r.sum, r.err = readStream(c, slowly)
				if err := c.CloseWrite(); err != nil { // the relay waits for the client's FIN too
					t.Fatal(err)
				}
			}
			growth := stop()
			if err := srv.result(t); err != nil {
				t.Fatalf("upstream: %v", err)
			}
			if r.err != nil || r.n != total || r.sum != streamSum(7, total) {
				t.Fatalf("slow side received %d of %d bytes (err %v), sha256 match %v", r.n, total, r.err, r.sum == streamSum(7, total))
			}
			t.Logf("%s of %d MiB: peak HeapInuse growth %.1f MiB", dir, total>>20, float64(growth)/(1<<20))
			if growth > limit {
				t.Errorf("HeapInuse grew by %d MiB relaying %d MiB with HighWater %d KiB: backpressure is not holding (limit %d MiB)",
					growth>>20, total>>20, testCfg.HighWater>>10, limit>>20)
			}
			e.nextPair(t).waitFinished(t)
		})
	}
}

// TestRelayClientHalfClose: the client sends its request and FIN, then waits
// for the whole reply (a tunnel relays "until both sides are done").
func TestRelayClientHalfClose(t *testing.T) { forEachPath(t, testRelayClientHalfClose) }

func testRelayClientHalfClose(t *testing.T, testCfg Config) {
	tests := []struct {
		name  string
		req   int64
		reply int64
		pace  func() // client reading pace
	}{
		{"small", 5, 5, nil},
		{"1MiB request, 8MiB reply", 1 << 20, 8 << 20, nil},
		{"reply to a slow reader", 1 << 10, 32 << 20, slowly}, // KNOWN BUG: see TestRelayClientHalfCloseGated
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan streamResult, 1)
			srv := startUpstream(t, func(c *net.TCPConn) error {
				n, sum, err := readStream(c, nil)
				got <- streamResult{n, sum, err}
				if err != nil {
					return err
				}
				_, err = writeStream(c, 4, tt.reply) // after the client's FIN
				return err                           // then Close
			})
			e := startRelayEngine(t, testCfg, srv.addr)
			c := e.dialClient(t)
			if _, err := writeStream(c, 3, tt.req); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			n, sum, err := readStream(c, tt.pace)
			if r := <-got; r.err != nil || r.n != tt.req || r.sum != streamSum(3, tt.req) {
				t.Errorf("upstream read %d of %d request bytes (err %v)", r.n, tt.req, r.err)
			}
			if err := srv.result(t); err != nil {
				t.Errorf("upstream: %v", err)
			}
			p := e.nextPair(t)
			if err != nil || n != tt.reply || sum != streamSum(4, tt.reply) {
				t.Fatalf("client received %d of %d reply bytes after its FIN (err %v, sha256 match %v). %s",
					n, tt.reply, err, sum == streamSum(4, tt.reply), p.lostReport())
			}
			p.waitFinished(t)
			if p.closedUndrained.Load() {
				t.Logf("Closed() was true while the client sink still held bytes: the owner must keep calling Service until NeedsService is false")
			}
		})
	}
}

// TestRelayServerHalfClose: the upstream sends first and FINs, then still
// receives everything the client sends afterwards.
func TestRelayServerHalfClose(t *testing.T) { forEachPath(t, testRelayServerHalfClose) }

func testRelayServerHalfClose(t *testing.T, testCfg Config) {
	tests := []struct {
		name   string
		banner int64
		upload int64
		pace   func() // upstream reading pace
	}{
		{"small", 5, 5, nil},
		{"1MiB banner, 8MiB upload", 1 << 20, 8 << 20, nil},
		{"upload to a slow reader", 1 << 10, 32 << 20, slowly}, // KNOWN BUG: see TestRelayClientHalfCloseGated
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan streamResult, 1)
			srv := startUpstream(t, func(c *net.TCPConn) error {
				if _, err := writeStream(c, 5, tt.banner); err != nil {
					return err
				}
				if err := c.CloseWrite(); err != nil {
					return err
				}
				n, sum, err := readStream(c, tt.pace)
				got <- streamResult{n, sum, err}
				return err
			})
			e := startRelayEngine(t, testCfg, srv.addr)
			c := e.dialClient(t)
			n, sum, err := readStream(c, nil) // banner, then the forwarded FIN
			if err != nil || n != tt.banner || sum != streamSum(5, tt.banner) {
				t.Fatalf("client read %d of %d banner bytes (err %v)", n, tt.banner, err)
			}
			if _, err := writeStream(c, 6, tt.upload); err != nil {
				t.Fatalf("client write after the upstream's FIN: %v", err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if err := srv.result(t); err != nil {
				t.Errorf("upstream: %v", err)
			}
			p := e.nextPair(t)
			if r := <-got; r.err != nil || r.n != tt.upload || r.sum != streamSum(6, tt.upload) {
				t.Fatalf("upstream received %d of %d bytes sent after its FIN (err %v, sha256 match %v). %s",
					r.n, tt.upload, r.err, r.sum == streamSum(6, tt.upload), p.lostReport())
			}
			p.waitFinished(t)
		})
	}
}

// The gated tests fix the relayed sockets' buffers: small for sending (the
// path out of the relay holds little, so the relay's own queue reaches
// HighWater and it pauses the sending side) and large for receiving (so the
// sender's whole stream and its FIN land in the paused side's socket).
const (
	gatedSnd = 64 << 10
	gatedRcv = 4 << 20
)

// KNOWN BUG (fails today): gnet closes a side whose reads this relay masked
// (Pause) with io.EOF on a bare EPOLLHUP, which the kernel raises once the
// relay has shut that socket's write half and the peer's FIN arrives, without
// reading the bytes still in the socket; Relay.OnClose does not take them, so
// they are lost. The lostReport in the failure message shows how many.
//
// TestRelayClientHalfCloseGated is the deterministic form of "reply to a slow
// reader": the client half-closes, then reads nothing until the upstream has
// written its whole reply and closed. The reply is larger than what the
// client path holds (small buffers plus HighWater), so the relay has paused
// the upstream when the upstream's FIN arrives behind reply bytes still
// unread in the upstream socket; they must all reach the client.
func TestRelayClientHalfCloseGated(t *testing.T) { forEachPath(t, testRelayClientHalfCloseGated) }

func testRelayClientHalfCloseGated(t *testing.T, testCfg Config) {
	const reply = 2 << 20
	serverDone := make(chan struct{})
	srv := startUpstream(t, func(c *net.TCPConn) error {
		defer close(serverDone)
		if _, _, err := readStream(c, nil); err != nil {
			return err
		}
		_, err := writeStream(c, 8, reply)
		if err == nil {
			err = c.Close() // FIN right behind the last byte
		}
		return err
	})
	e := startRelayEngineBuf(t, testCfg, srv.addr, gatedRcv, gatedSnd)
	c := e.dialClient(t)
	_ = c.SetReadBuffer(gatedSnd)
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-serverDone:
	case <-time.After(testDeadline / 2):
		t.Log("upstream could not finish writing before the client reads; reading anyway")
	}
	n, sum, err := readStream(c, nil)
	if err := srv.result(t); err != nil {
		t.Errorf("upstream: %v", err)
	}
	p := e.nextPair(t)
	if err != nil || n != reply || sum != streamSum(8, reply) {
		t.Fatalf("client received %d of %d reply bytes after its FIN (err %v, sha256 match %v). %s",
			n, int64(reply), err, sum == streamSum(8, reply), p.lostReport())
	}
	p.waitFinished(t)
	if p.closedUndrained.Load() {
		t.Logf("Closed() was true while the client sink still held bytes: the owner must keep calling Service until NeedsService is false")
	}
}

// KNOWN BUG (fails today): as TestRelayClientHalfCloseGated, on the client side.
//
// TestRelayServerHalfCloseGated is the mirror: the upstream FINs first, the
// client uploads and FINs while the upstream reads nothing, so the relay has
// paused the client when the client's FIN arrives.
func TestRelayServerHalfCloseGated(t *testing.T) { forEachPath(t, testRelayServerHalfCloseGated) }

func testRelayServerHalfCloseGated(t *testing.T, testCfg Config) {
	const upload = 2 << 20
	clientDone := make(chan struct{})
	got := make(chan streamResult, 1)
	srv := startUpstream(t, func(c *net.TCPConn) error {
		_ = c.SetReadBuffer(gatedSnd)
		if _, err := c.Write([]byte("banner")); err != nil {
			return err
		}
		if err := c.CloseWrite(); err != nil {
			return err
		}
		select {
		case <-clientDone:
		case <-time.After(testDeadline / 2):
		}
		n, sum, err := readStream(c, nil)
		got <- streamResult{n, sum, err}
		return err
	})
	e := startRelayEngineBuf(t, testCfg, srv.addr, gatedRcv, gatedSnd)
	c := e.dialClient(t)
	if b, err := io.ReadAll(c); err != nil || string(b) != "banner" {
		t.Fatalf("client read %q, %v; want the banner then EOF", b, err)
	}
	_, err := writeStream(c, 9, upload)
	if err == nil {
		err = c.CloseWrite()
	}
	close(clientDone)
	if err != nil {
		t.Fatalf("client upload after the upstream's FIN: %v", err)
	}
	if err := srv.result(t); err != nil {
		t.Errorf("upstream: %v", err)
	}
	p := e.nextPair(t)
	if r := <-got; r.err != nil || r.n != upload || r.sum != streamSum(9, upload) {
		t.Fatalf("upstream received %d of %d bytes sent after its FIN (err %v, sha256 match %v). %s",
			r.n, int64(upload), r.err, r.sum == streamSum(9, upload), p.lostReport())
	}
	p.waitFinished(t)
}

// readUntilClosed reads c until EOF or an error and returns what ended it.
func readUntilClosed(c net.Conn) error {
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return io.EOF
	}
	return err
}

func isEOFOrReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && (oe.Op == "read" || oe.Op == "write")
}

func TestRelayUpstreamReset(t *testing.T) { forEachPath(t, testRelayUpstreamReset) }

func testRelayUpstreamReset(t *testing.T, testCfg Config) {
	srv := startUpstream(t, func(c *net.TCPConn) error {
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		if _, err := c.Write([]byte("bye")); err != nil {
			return err
		}
		return c.SetLinger(0) // Close now sends RST
	})
	e := startRelayEngine(t, testCfg, srv.addr)
	c := e.dialClient(t)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := srv.result(t); err != nil {
		t.Fatal(err)
	}
	if err := readUntilClosed(c); !isEOFOrReset(err) {
		t.Fatalf("client read ended with %v, want EOF or reset", err)
	}
	p := e.nextPair(t)
	p.waitFinished(t)
	if err := p.sideErr(Upstream); err == nil || errors.Is(err, io.EOF) {
		t.Logf("upstream closed with %v", err) // gnet may see the RST as EOF when it was not reading
	}
}

func TestRelayClientReset(t *testing.T) { forEachPath(t, testRelayClientReset) }

func testRelayClientReset(t *testing.T, testCfg Config) {
	ended := make(chan error, 1)
	srv := startUpstream(t, func(c *net.TCPConn) error {
		ended <- readUntilClosed(c)
		return nil
	})
	e := startRelayEngine(t, testCfg, srv.addr)
	c := e.dialClient(t)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	p := e.nextPair(t)
	// Wait until the bytes crossed, so the upstream is open, then reset.
	deadline := time.Now().Add(testDeadline)
	for p.moved[Client].Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_ = c.SetLinger(0)
	_ = c.Close()
	select {
	case err := <-ended:
		if !isEOFOrReset(err) {
			t.Fatalf("upstream read ended with %v, want EOF or reset", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("client reset did not close the upstream")
	}
	p.waitFinished(t)
}

func TestRelayAbort(t *testing.T) { forEachPath(t, testRelayAbort) }

func testRelayAbort(t *testing.T, testCfg Config) {
	ended := make(chan error, 1)
	srv := startUpstream(t, func(c *net.TCPConn) error {
		if _, err := c.Write([]byte("ready")); err != nil {
			return err
		}
		ended <- readUntilClosed(c)
		return nil
	})
	e := startRelayEngine(t, testCfg, srv.addr)
	c := e.dialClient(t)
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ready" {
		t.Fatalf("read %q, %v", b, err)
	}
	p := e.nextPair(t)
	if p.done.Load() || p.closed.Load() {
		t.Fatalf("idle open relay: Done=%v Closed=%v", p.done.Load(), p.closed.Load())
	}
	p.onLoop(t, func() { p.relay.Abort() })
	if !p.done.Load() && testCfg.SpliceAfter >= 0 {
		// A spliced tunnel ends at the next Service, once its splice loop
		// gave it back; a user-space one at once.
		t.Errorf("Done() false right after Abort")
	}
	if err := readUntilClosed(c); !isEOFOrReset(err) {
		t.Fatalf("client read ended with %v after Abort", err)
	}
	select {
	case err := <-ended:
		if !isEOFOrReset(err) {
			t.Fatalf("upstream read ended with %v after Abort", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("Abort did not close the upstream")
	}
	p.waitFinished(t)
}

// TestRelayManyPairs runs several relays on the one loop at once.
func TestRelayManyPairs(t *testing.T) { forEachPath(t, testRelayManyPairs) }

func testRelayManyPairs(t *testing.T, testCfg Config) {
	srv := startUpstream(t, func(c *net.TCPConn) error {
		if _, err := io.Copy(c, c); err != nil {
			return err
		}
		return c.CloseWrite()
	})
	e := startRelayEngine(t, testCfg, srv.addr)
	const pairs, size = 8, 4 << 20
	var wg sync.WaitGroup
	errs := make(chan error, pairs)
	for i := range pairs {
		c := e.dialClient(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() {
				if _, err := writeStream(c, uint64(100+i), size); err == nil {
					_ = c.CloseWrite()
				}
			}()
			n, sum, err := readStream(c, nil)
			if err != nil || n != size || sum != streamSum(uint64(100+i), size) {
				errs <- fmt.Errorf("pair %d: echoed %d of %d bytes (err %v)", i, n, size, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for range pairs {
		e.nextPair(t).waitFinished(t)
	}
}

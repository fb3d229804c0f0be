package engine_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyto/proxyto/engine"
)

// patternReader yields n deterministic pseudo-random bytes (a random block
// with a counter stamped into each copy) without holding them all.
type patternReader struct {
	left  int64
	block []byte
	ctr   uint64
	off   int
}

func newPattern(n int64, seed uint64) *patternReader {
	b := make([]byte, 32<<10)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return &patternReader{left: n, block: b}
}

func (p *patternReader) Read(dst []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(dst) && p.left > 0 {
		if p.off == 0 {
			p.ctr++
			binary.LittleEndian.PutUint64(p.block, p.ctr)
		}
		k := copy(dst[n:], p.block[p.off:])
		if int64(k) > p.left {
			k = int(p.left)
		}
		n += k
		p.left -= int64(k)
		p.off = (p.off + k) % len(p.block)
	}
	return n, nil
}

// hashOf returns the sha256 of n pattern bytes.
func hashOf(n int64, seed uint64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, newPattern(n, seed))
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func sumOf(h hash.Hash) [32]byte {
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// echoThrough sends n bytes into an open tunnel to an echo target, half-closes
// and reads the echo to EOF; it returns an error instead of failing so that it
// can run in goroutines.
func echoThrough(c *client, n int64, seed uint64) error {
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(c.c, newPattern(n, seed))
		if err == nil {
			err = c.c.CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	got, rerr := io.Copy(h, c.br)
	werr := <-errc
	switch {
	case werr != nil:
		return fmt.Errorf("write: %w", werr)
	case rerr != nil:
		return fmt.Errorf("read after %d bytes: %w", got, rerr)
	case got != n:
		return fmt.Errorf("echoed %d bytes, want %d", got, n)
	case sumOf(h) != hashOf(n, seed):
		return fmt.Errorf("echo sha256 mismatch over %d bytes", n)
	}
	return nil
}

// echoN sends n bytes into an open tunnel to an echo target and reads n
// bytes back, leaving the tunnel open.
func echoN(c *client, n int64, seed uint64) error {
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(c.c, newPattern(n, seed))
		errc <- err
	}()
	h := sha256.New()
	got, rerr := io.CopyN(h, c.br, n)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d bytes: %w", got, rerr)
	}
	if sumOf(h) != hashOf(n, seed) {
		return fmt.Errorf("echo sha256 mismatch over %d bytes", n)
	}
	return nil
}

func TestInprocConnectTunnelSHA256(t *testing.T) {
	echo := startEcho(t)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	for _, n := range []int64{0, 1, 1500, 64 << 10, 4 << 20} {
		t.Run(strconv.FormatInt(n, 10), func(t *testing.T) {
			c := openTunnel(t, te.addr, echo, up.addr)
			if err := echoThrough(c, n, uint64(n)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestInprocConnectResponseHeaders(t *testing.T) {
	echo := startEcho(t)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	c := dialClient(t, te.addr)
	// Bytes sent right behind the CONNECT head are relayed too.
	c.write(connectReq(echo, up.addr, "X-Vendor-Session: abc\r\n") + "early")
	r := c.mustRead("CONNECT")
	if r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	if got := r.Header.Get("X-Exit-IP"); got != "203.0.113.7" {
		t.Errorf("upstream's X-Exit-IP not passed on: %q", got)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "early" {
		t.Fatalf("early bytes: %q %v", got, err)
	}
	seen := up.seenRequests()
	if len(seen) != 1 || seen[0].header.Get("X-Vendor-Session") != "abc" || len(seen[0].header.Values("X-Proxy-To")) != 0 {
		t.Fatalf("upstream saw %+v", seen)
	}
}

func TestInprocConnectConcurrent50(t *testing.T) {
	echo := startEcho(t)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{Loops: 2})
	const tunnels = 50
	const size = 256 << 10
	clients := make([]*client, tunnels)
	for i := range clients {
		clients[i] = dialClient(t, te.addr)
	}
	var wg sync.WaitGroup
	errs := make(chan error, tunnels)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := io.WriteString(c.c, connectReq(echo, up.addr)); err != nil {
				errs <- err
				return
			}
			r, err := http.ReadResponse(c.br, &http.Request{Method: "CONNECT"})
			if err != nil {
				errs <- fmt.Errorf("tunnel %d: %w", i, err)
				return
			}
			if r.StatusCode != 200 {
				errs <- fmt.Errorf("tunnel %d: status %d", i, r.StatusCode)
				return
			}
			if err := echoThrough(c, size+int64(i), uint64(i)); err != nil {
				errs <- fmt.Errorf("tunnel %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, c := range clients {
		_ = c.c.Close()
	}
	st := te.rec.settled(t)
	if st.tunnelsOpened != tunnels {
		t.Errorf("TunnelOpened %d, want %d", st.tunnelsOpened, tunnels)
	}
	var want int64
	for i := range tunnels {
		want += size + int64(i)
	}
	if st.up != want || st.down != want {
		t.Errorf("Relayed up=%d down=%d, want %d each", st.up, st.down, want)
	}
}

// TestInprocHalfClose: a client that half-closes still gets the whole reply;
// a target that half-closes first still receives everything sent after.
func TestInprocHalfClose(t *testing.T) {
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	const n = 1 << 20

	t.Run("client FIN first", func(t *testing.T) {
		// Target: read to EOF, then answer with the hash and 1 MiB.
		target := startTCP(t, func(c *net.TCPConn) {
			h := sha256.New()
			got, _ := io.Copy(h, c)
			fmt.Fprintf(c, "%020d%x", got, h.Sum(nil))
			_, _ = io.Copy(c, newPattern(n, 7))
			_ = c.CloseWrite()
		})
		c := openTunnel(t, te.addr, target, up.addr)
		if _, err := io.Copy(c.c, newPattern(n, 3)); err != nil {
			t.Fatal(err)
		}
		if err := c.c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 20+64)
		if _, err := io.ReadFull(c.br, head); err != nil {
			t.Fatalf("reply head: %v", err)
		}
		want := fmt.Sprintf("%020d%x", n, hashOf(n, 3))
		if string(head) != want {
			t.Fatalf("target got %q, want %q", head, want)
		}
		h := sha256.New()
		got, err := io.Copy(h, c.br)
		if err != nil || got != n || sumOf(h) != hashOf(n, 7) {
			t.Fatalf("reply after half-close: %d bytes, err %v, hash ok %v", got, err, sumOf(h) == hashOf(n, 7))
		}
	})

	t.Run("target FIN first", func(t *testing.T) {
		type result struct {
			n   int64
			sum [32]byte
		}
		res := make(chan result, 1)
		target := startTCP(t, func(c *net.TCPConn) {
			_, _ = io.WriteString(c, "hello")
			_ = c.CloseWrite()
			h := sha256.New()
			got, _ := io.Copy(h, c)
			res <- result{got, sumOf(h)}
		})
		c := openTunnel(t, te.addr, target, up.addr)
		greeting, err := io.ReadAll(c.br) // up to the target's FIN
		if err != nil || string(greeting) != "hello" {
			t.Fatalf("greeting %q, err %v", greeting, err)
		}
		if _, err := io.Copy(c.c, newPattern(n, 11)); err != nil {
			t.Fatalf("write after the target's FIN: %v", err)
		}
		if err := c.c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-res:
			if r.n != n || r.sum != hashOf(n, 11) {
				t.Fatalf("target received %d bytes (hash ok %v), want %d", r.n, r.sum == hashOf(n, 11), n)
			}
		case <-time.After(waitLong):
			t.Fatal("target never saw EOF")
		}
	})
	_ = te.rec.settled(t)
}

// TestInprocMemoryBound: a fast uploader against a slow reader must not make
// the engine buffer the difference.
func TestInprocMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB")
	}
	const total = 256 << 20
	const slowPart = 48 << 20 // read slowly at first; the rest at full speed
	type result struct {
		n   int64
		sum [32]byte
	}
	res := make(chan result, 1)
	target := startTCP(t, func(c *net.TCPConn) {
		_ = c.SetReadBuffer(64 << 10)
		h := sha256.New()
		buf := make([]byte, 32<<10)
		var got int64
		for {
			k, err := c.Read(buf)
			h.Write(buf[:k])
			got += int64(k)
			if err != nil {
				break
			}
			if got < slowPart {
				time.Sleep(time.Millisecond)
			}
		}
		res <- result{got, sumOf(h)}
	})
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{})
	c := openTunnel(t, te.addr, target, up.addr)
	_ = c.c.SetDeadline(time.Now().Add(3 * time.Minute))

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	_, err := io.CopyBuffer(struct{ io.Writer }{c.c}, newPattern(total, 99), make([]byte, 256<<10))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	_ = c.c.CloseWrite()
	var r result
	select {
	case r = <-res:
	case <-time.After(2 * time.Minute):
		t.Fatal("target did not finish")
	}
	close(stop)
	<-sampled
	if r.n != total || r.sum != hashOf(total, 99) {
		t.Fatalf("target received %d bytes (hash ok %v), want %d", r.n, r.sum == hashOf(total, 99), total)
	}
	growth := int64(peak.Load()) - int64(base)
	t.Logf("HeapInuse: base %d MiB, peak %d MiB, growth %d MiB", base>>20, peak.Load()>>20, growth>>20)
	if growth > 64<<20 {
		t.Fatalf("HeapInuse grew by %d MiB while relaying %d MiB to a slow reader", growth>>20, total>>20)
	}
	if rest, _ := io.ReadAll(c.br); len(rest) != 0 {
		t.Fatalf("unexpected bytes back: %d", len(rest))
	}
}

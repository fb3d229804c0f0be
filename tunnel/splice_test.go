package tunnel

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSpliceSwitchesMidStream: a tunnel whose traffic alternates between
// small writes and bulk bursts, with pauses longer than SpliceIdle, moves
// between the user-space and the splice path several times each way, and
// the echo comes back whole and in order.
func TestSpliceSwitchesMidStream(t *testing.T) {
	srv := startUpstream(t, func(c *net.TCPConn) error {
		if _, err := io.Copy(c, c); err != nil {
			return err
		}
		return c.CloseWrite()
	})
	cfg := testCfg
	cfg.SpliceAfter = 64 << 10
	cfg.SpliceIdle = 30 * time.Millisecond
	e := startRelayEngine(t, cfg, srv.addr)
	c := e.dialClient(t)

	rng := rand.New(rand.NewPCG(7, 7))
	var sent bytes.Buffer
	rounds := 12
	if raceEnabled {
		rounds = 6
	}
	var got bytes.Buffer
	readDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(&got, c)
		readDone <- err
	}()
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	sent.WriteString("hi")
	p := e.nextPair(t)
	spliced := func() (on bool) {
		p.onLoop(t, func() { on = p.relay.sp != nil })
		return on
	}
	for i := range rounds {
		for range 20 { // small, interactive writes
			b := make([]byte, 1+rng.IntN(200))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			sent.Write(b)
			if _, err := c.Write(b); err != nil {
				t.Fatalf("round %d small write: %v", i, err)
			}
		}
		big := make([]byte, (1+rng.IntN(4))<<20) // bulk: the splice path
		for j := range big {
			big[j] = byte(rng.Uint32())
		}
		sent.Write(big)
		if _, err := c.Write(big); err != nil {
			t.Fatalf("round %d large write: %v", i, err)
		}
		// Quiet until the tunnel is back on the user-space path.
		deadline := time.Now().Add(testDeadline)
		for spliced() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the tunnel did not come back from the splice path", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readDone:
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("echo did not end")
	}
	if !bytes.Equal(got.Bytes(), sent.Bytes()) {
		i := 0
		for i < got.Len() && i < sent.Len() && got.Bytes()[i] == sent.Bytes()[i] {
			i++
		}
		t.Fatalf("echo differs from what was sent: %d bytes back of %d, first difference at %d", got.Len(), sent.Len(), i)
	}
	p.waitFinished(t)
	var switches int64
	p.onLoop(t, func() { switches = p.loop.spliceStarts })
	if switches < int64(rounds) {
		t.Errorf("the tunnel took the splice path %d times, want %d (every bulk burst after a quiet pause)", switches, rounds)
	}
}

// TestSplicePipeExhaustion: more bulk tunnels than pipes still relay every
// byte both ways (a direction without a pipe copies through user space).
func TestSplicePipeExhaustion(t *testing.T) {
	const tunnels = 6
	size := int64(32 << 20)
	if raceEnabled {
		size = 8 << 20
	}
	srv := startUpstream(t, func(c *net.TCPConn) error {
		var wg sync.WaitGroup
		var rerr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, rerr = io.Copy(io.Discard, c)
		}()
		_, err := writeStream(c, 9, size)
		if err == nil {
			err = c.CloseWrite()
		}
		wg.Wait()
		if err == nil {
			err = rerr
		}
		return err
	})
	cfg := testCfg
	cfg.SpliceAfter = -1 // every tunnel on the splice path from the start
	cfg.SplicePipes = 2  // for 2 × tunnels directions
	e := startRelayEngine(t, cfg, srv.addr)
	var wg sync.WaitGroup
	errs := make(chan error, tunnels)
	for i := range tunnels {
		c := e.dialClient(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			werr := make(chan error, 1)
			go func() {
				_, err := writeStream(c, uint64(100+i), size)
				if err == nil {
					err = c.CloseWrite()
				}
				werr <- err
			}()
			n, sum, err := readStream(c, nil)
			if err != nil || n != size || sum != streamSum(9, size) {
				errs <- fmt.Errorf("tunnel %d received %d bytes (err %v), sha256 match %v", i, n, err, sum == streamSum(9, size))
				return
			}
			if err := <-werr; err != nil {
				errs <- fmt.Errorf("tunnel %d write: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkRelay moves 1 GiB from a client through a relay to an upstream
// that discards it, on each path: CPU of the whole process per MiB (client,
// relay and upstream share it, so compare the paths, not the absolutes).
func BenchmarkRelay(b *testing.B) {
	for _, p := range []struct {
		name  string
		after int
	}{{"user", 0}, {"splice", -1}} {
		b.Run(p.name, func(b *testing.B) {
			const size = 1 << 30
			srv := startUpstream(b, func(c *net.TCPConn) error {
				_, err := io.Copy(io.Discard, c)
				return err
			})
			cfg := testCfg
			cfg.SpliceAfter = p.after
			e := startRelayEngine(b, cfg, srv.addr)
			buf := make([]byte, 256<<10)
			b.SetBytes(size)
			b.ReportAllocs()
			var cpu time.Duration
			for b.Loop() {
				c := e.dialClient(b)
				start := cpuTime()
				for n := 0; n < size; n += len(buf) {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				_ = c.CloseWrite()
				_, _ = io.Copy(io.Discard, c)
				cpu += cpuTime() - start
				_ = c.Close()
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/1024, "cpu-µs/MiB")
		})
	}
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

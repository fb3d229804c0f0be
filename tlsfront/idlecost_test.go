//go:build !race

package tlsfront

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/internal/bridge"
)

// The race detector changes what memory and goroutines cost, so the
// measurement runs only without it.

const (
	idleConns  = 2000
	idleEnv    = "TLSFRONT_IDLE_CLIENT" // "addr caFile n" for the client process
	talkUp     = 300                    // a CONNECT head with a few headers
	talkDown   = 39                     // "HTTP/1.1 200 Connection established\r\n\r\n"
	bulkVolume = 64 << 10               // a small download and upload
)

// TestIdleConnectionCost holds idleConns TLS client connections, opened by
// a separate process so that only the server's side is counted, and
// reports what each costs the server in heap plus goroutine stacks, and in
// goroutines: right after the handshake, after a CONNECT-sized exchange,
// and after 64 KiB each way. The engine's end of each bridge is held as a
// bare descriptor, as gnet holds it.
//
//	go test -run TestIdleConnectionCost -v ./tlsfront
func TestIdleConnectionCost(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 TLS connections")
	}
	var (
		mu  sync.Mutex
		fds []int
		got = make(chan struct{}, idleConns)
	)
	f := startFront(t, func(c *Config) {
		c.Handoff = func(hc Conn) {
			fd := hold(t, hc.Plain)
			mu.Lock()
			fds = append(fds, fd)
			mu.Unlock()
			got <- struct{}{}
		}
	})
	t.Cleanup(func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	})
	base := measure()
	releases := bridge.Releases()

	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientsHelper$")
	cmd.Env = append(os.Environ(), idleEnv+"="+f.addr+" "+f.ca.CAFile+" "+strconv.Itoa(idleConns))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	step := func(cmdLine, want string) {
		t.Helper()
		if cmdLine != "" {
			fmt.Fprintln(stdin, cmdLine)
		}
		for lines.Scan() {
			if lines.Text() == want {
				return
			}
			t.Logf("client: %s", lines.Text())
		}
		t.Fatalf("client process ended before %q", want)
	}

	step("", "ready")
	for range idleConns {
		select {
		case <-got:
		case <-time.After(60 * time.Second):
			t.Fatal("not every connection was handed off")
		}
	}
	// report waits until every connection is idle (no copy buffer held,
	// and each released its TLS read buffers since the phase began), then
	// measures.
	report := func(phase string) (perConn float64, goroutines float64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for (bridge.BuffersHeld() != 0 || bridge.Releases()-releases < idleConns) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := bridge.Releases() - releases; n < idleConns {
			t.Errorf("%s: only %d of %d idle connections released their TLS read buffers", phase, n, idleConns)
		}
		releases = bridge.Releases()
		m := measure()
		perConn = float64(m.bytes-base.bytes) / idleConns
		goroutines = float64(m.goroutines-base.goroutines) / idleConns
		t.Logf("%-28s %7.0f bytes/conn (heap %6.0f, stacks %6.0f), %.2f goroutines/conn, %d copy buffers held",
			phase, perConn, float64(m.heap-base.heap)/idleConns, float64(m.stack-base.stack)/idleConns,
			goroutines, bridge.BuffersHeld())
		if held := bridge.BuffersHeld(); held != 0 {
			t.Errorf("%s: %d copy buffers held by idle connections", phase, held)
		}
		return perConn, goroutines
	}
	perConn, goroutines := report("after handshake")
	// Two parked goroutines and the TLS session: well under two 32 KiB
	// buffers, which is what holding a copy buffer per direction would
	// cost.
	if perConn > 48<<10 || goroutines > 2.05 {
		t.Errorf("an idle TLS connection costs %.0f bytes and %.2f goroutines", perConn, goroutines)
	}

	// A CONNECT-sized exchange on every connection.
	releases = bridge.Releases()
	fmt.Fprintln(stdin, "talk")
	serveAll(t, fds, talkUp, talkDown)
	step("", "talked")
	report("after a CONNECT exchange")

	releases = bridge.Releases()
	fmt.Fprintln(stdin, "bulk")
	serveAll(t, fds, bulkVolume, bulkVolume)
	step("", "bulked")
	report("after 64 KiB each way")
}

// memory is what the process holds: live heap, goroutine stacks, goroutines.
type memory struct {
	heap, stack, bytes uint64
	goroutines         int
}

func measure() memory {
	for range 3 { // the third cycle also empties sync.Pool's victim cache
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heap: ms.HeapAlloc, stack: ms.StackInuse, bytes: ms.HeapAlloc + ms.StackInuse,
		goroutines: runtime.NumGoroutine()}
}

// hold keeps c's descriptor the way gnet's Enroll does (a dup), and closes c.
func hold(t *testing.T, c net.Conn) int {
	rc, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Error(err)
		return -1
	}
	fd := -1
	_ = rc.Control(func(s uintptr) { fd, err = unix.Dup(int(s)) })
	if err != nil {
		t.Error(err)
	}
	_ = c.Close()
	return fd
}

// serveAll plays the engine on each held descriptor: read up bytes, then
// write down bytes. Each runs through a transient net.Conn, closed again so
// that the measurement after it counts descriptors only.
func serveAll(t *testing.T, fds []int, up, down int) {
	t.Helper()
	// Every connection at once: the client process serves them in its own
	// order.
	var wg sync.WaitGroup
	errs := make(chan error, len(fds))
	for _, fd := range fds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.FileConn(os.NewFile(uintptr(dupFD(fd)), "engine"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := io.CopyN(io.Discard, c, int64(up)); err != nil {
				errs <- err
				return
			}
			if _, err := c.Write(make([]byte, down)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func dupFD(fd int) int {
	d, err := unix.Dup(fd)
	if err != nil {
		return -1
	}
	return d
}

// TestIdleClientsHelper is the client process of TestIdleConnectionCost.
// It does nothing unless started by it.
func TestIdleClientsHelper(t *testing.T) {
	spec := os.Getenv(idleEnv)
	if spec == "" {
		t.Skip("the client process of TestIdleConnectionCost")
	}
	var addr, caFile string
	var n int
	if _, err := fmt.Sscan(spec, &addr, &caFile, &n); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(1)}
	conns := make([]*tls.Conn, n)
	parallel(n, 16, func(i int) error {
		c, err := tls.Dial("tcp", addr, cfg)
		conns[i] = c
		return err
	})
	fmt.Println("ready")
	cmds := bufio.NewScanner(os.Stdin)
	for cmds.Scan() {
		up, down := talkUp, talkDown
		if cmds.Text() == "bulk" {
			up, down = bulkVolume, bulkVolume
		}
		parallel(n, n, func(i int) error { // all at once: the server serves them in its own order
			_ = conns[i].SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := conns[i].Write(make([]byte, up)); err != nil {
				return err
			}
			_, err := io.CopyN(io.Discard, conns[i], int64(down))
			return err
		})
		fmt.Println(cmds.Text() + "ed")
	}
}

// parallel runs fn(0..n-1) on up to workers goroutines and exits the
// process on the first error (it is the helper process; the parent sees it
// end early).
func parallel(n, workers int, fn func(i int) error) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				fmt.Fprintln(os.Stderr, "client:", err)
				os.Exit(1)
			}
		}()
	}
	wg.Wait()
}

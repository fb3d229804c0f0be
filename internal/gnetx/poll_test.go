package gnetx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// testDeadline bounds every wait in these tests; nothing asserts timing.
const testDeadline = 60 * time.Second

func TestSelfCheck(t *testing.T) {
	for range 3 { // repeatable: engines start and stop cleanly
		if err := SelfCheck(); err != nil {
			t.Fatal(err)
		}
	}
}

// hookEngine is a one-loop gnet engine whose callbacks call test hooks.
type hookEngine struct {
	gnet.BuiltinEventEngine
	eng       gnet.Engine
	addr      string
	booted    chan struct{}
	opened    chan gnet.Conn
	mu        sync.Mutex
	traffic   bytes.Buffer // everything OnTraffic read
	onTraffic int
	closed    chan error
	// hooks, when set, replace the default callbacks' work (set before use)
	trafficHook func(c gnet.Conn)
	closeHook   func(c gnet.Conn, err error)
}

func startHookEngine(t *testing.T) *hookEngine { return startHookEngineWith(t, nil, nil) }

// startHookEngineWith starts a hook engine whose callbacks call the hooks
// given (nil: the default behaviour). They are set before the loops start.
func startHookEngineWith(t *testing.T, traffic func(gnet.Conn), onClose func(gnet.Conn, error)) *hookEngine {
	t.Helper()
	h := &hookEngine{booted: make(chan struct{}), opened: make(chan gnet.Conn, 4), closed: make(chan error, 4),
		trafficHook: traffic, closeHook: onClose}
	runErr := make(chan error, 1)
	go func() {
		runErr <- gnet.Run(h, "tcp://127.0.0.1:0", gnet.WithNumEventLoop(1), gnet.WithLogger(Logger{}))
	}()
	select {
	case <-h.booted:
	case err := <-runErr:
		t.Fatalf("gnet.Run: %v", err)
	case <-time.After(testDeadline):
		t.Fatal("engine did not boot")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		_ = h.eng.Stop(ctx)
		<-runErr
	})
	return h
}

func (h *hookEngine) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	if fd, err := eng.Dup(); err == nil {
		h.addr = ListenerAddr(fd)
	}
	close(h.booted)
	return gnet.None
}

func (h *hookEngine) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	h.opened <- c
	return nil, gnet.None
}

func (h *hookEngine) OnTraffic(c gnet.Conn) gnet.Action {
	if h.trafficHook != nil {
		h.trafficHook(c)
		return gnet.None
	}
	b, _ := c.Next(-1)
	h.mu.Lock()
	h.traffic.Write(b)
	h.onTraffic++
	h.mu.Unlock()
	return gnet.None
}

func (h *hookEngine) OnClose(c gnet.Conn, err error) gnet.Action {
	if h.closeHook != nil {
		h.closeHook(c, err)
	}
	h.closed <- err
	return gnet.None
}

func (h *hookEngine) read() (string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.traffic.String(), h.onTraffic
}

// accept dials the engine and returns both ends.
func (h *hookEngine) accept(t *testing.T) (*net.TCPConn, gnet.Conn) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", h.addr, testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(testDeadline))
	select {
	case c := <-h.opened:
		return nc.(*net.TCPConn), c
	case <-time.After(testDeadline):
		t.Fatal("OnOpen not called")
		return nil, nil
	}
}

// on runs f on c's loop and waits for it.
func on(t *testing.T, c gnet.Conn, f func()) {
	t.Helper()
	ran := make(chan struct{})
	err := c.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		defer close(ran)
		f()
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(testDeadline):
		t.Fatal("loop did not run the task")
	}
}

// epollMask reads the interest mask of fd in the epoll set epfd from
// /proc/self/fdinfo, without the EPOLLERR|EPOLLHUP the kernel always adds.
func epollMask(t *testing.T, epfd, fd int) uint32 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(epfd))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "tfd:" && f[1] == strconv.Itoa(fd) && f[2] == "events:" {
			m, err := strconv.ParseUint(f[3], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(m) &^ (unix.EPOLLERR | unix.EPOLLHUP)
		}
	}
	t.Fatalf("fd %d not in epoll set %d:\n%s", fd, epfd, b)
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPauseResume(t *testing.T) {
	h := startHookEngine(t)
	nc, c := h.accept(t)
	var p Poller
	var fd int
	on(t, c, func() {
		var err error
		if p, err = PollerOf(c); err != nil {
			t.Error(err)
			return
		}
		fd = c.Fd()
		if err := p.Pause(c); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		return
	}
	if p2 := func() (q Poller) {
		on(t, c, func() { q, _ = PollerOf(c) })
		return q
	}(); p2 != p {
		t.Errorf("PollerOf not stable: %v vs %v", p2, p)
	}
	if m := epollMask(t, p.epfd, fd); m != 0 {
		t.Fatalf("paused with nothing queued: mask %#x, want 0", m)
	}

	// Bytes sent to a paused connection stay in the kernel.
	if _, err := nc.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 bytes queued in the socket", func() bool {
		var n int
		on(t, c, func() { n, _ = unix.IoctlGetInt(fd, unix.SIOCINQ) })
		return n == 5
	})
	if got, calls := h.read(); got != "" || calls != 0 {
		t.Fatalf("paused connection was read: %q in %d OnTraffic calls", got, calls)
	}

	// Pause with bytes queued for writing keeps EPOLLOUT so they drain.
	big := bytes.Repeat([]byte("x"), 16<<20)
	var queued int
	on(t, c, func() {
		_, _ = c.Write(big) // the client does not read yet: most of it queues
		queued = c.OutboundBuffered()
		_ = p.Pause(c)
	})
	if queued == 0 {
		t.Fatal("16 MiB write did not queue anything; cannot test write interest")
	}
	if m := epollMask(t, p.epfd, fd); m != unix.EPOLLOUT {
		t.Fatalf("paused with %d bytes queued: mask %#x, want EPOLLOUT", queued, m)
	}
	if n, err := io.ReadFull(nc, make([]byte, len(big))); err != nil {
		t.Fatalf("queued bytes did not drain while paused: %d of %d, %v", n, len(big), err)
	}
	waitFor(t, "gnet to drop write interest", func() bool {
		var q int
		on(t, c, func() { q = c.OutboundBuffered() })
		return q == 0
	})
	// gnet re-arms read interest once it drained (the documented quirk):
	// Pause again and check the mask.
	on(t, c, func() { _ = p.Pause(c) })
	if m := epollMask(t, p.epfd, fd); m != 0 {
		t.Fatalf("re-paused: mask %#x, want 0", m)
	}
	if got, _ := h.read(); got != "" && got != "hello" {
		t.Fatalf("unexpected read %q", got)
	}

	// Resume restores gnet's read interest and the bytes arrive.
	on(t, c, func() {
		if err := p.Resume(c); err != nil {
			t.Error(err)
		}
	})
	if m := epollMask(t, p.epfd, fd); m != readEvents {
		t.Fatalf("resumed: mask %#x, want %#x", m, readEvents)
	}
	waitFor(t, "OnTraffic after Resume", func() bool { got, _ := h.read(); return got == "hello" })

	// Resume with bytes queued keeps EPOLLOUT too.
	on(t, c, func() {
		_, _ = c.Write(big)
		queued = c.OutboundBuffered()
		_ = p.Resume(c)
	})
	if queued > 0 {
		if m := epollMask(t, p.epfd, fd); m != readEvents|writeEvents {
			t.Fatalf("resumed with %d queued: mask %#x, want %#x", queued, m, readEvents|writeEvents)
		}
	}
	if _, err := io.ReadFull(nc, make([]byte, len(big))); err != nil {
		t.Fatal(err)
	}
}

func TestPauseClosedFD(t *testing.T) {
	h := startHookEngine(t)
	_, c := h.accept(t)
	var p Poller
	on(t, c, func() { p, _ = PollerOf(c) })
	// A descriptor that is not in the epoll set: epoll_ctl fails, no panic.
	if err := p.ctl(-1, readEvents); err == nil {
		t.Error("ctl on fd -1 succeeded")
	}
}

func TestStealOutbound(t *testing.T) {
	h := startHookEngine(t)
	nc, c := h.accept(t)
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	var stolen []byte
	var queued, after int
	on(t, c, func() {
		if got := StealOutbound(c, []byte("keep")); string(got) != "keep" {
			t.Errorf("nothing queued: StealOutbound = %q", got)
		}
		_, _ = c.Write(data) // client not reading: the tail queues in gnet
		queued = c.OutboundBuffered()
		stolen = StealOutbound(c, []byte("prefix"))
		after = c.OutboundBuffered()
		_ = c.Close()
	})
	if queued == 0 {
		t.Fatal("nothing queued; cannot test")
	}
	if after != 0 {
		t.Errorf("OutboundBuffered after steal = %d, want 0", after)
	}
	if !bytes.HasPrefix(stolen, []byte("prefix")) || !bytes.Equal(stolen[6:], data[len(data)-queued:]) {
		t.Fatalf("stole %d bytes, want the %d queued bytes after the prefix, in order", len(stolen)-6, queued)
	}
	// The client gets exactly the part the kernel took, then EOF.
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[:len(data)-queued]) {
		t.Fatalf("client read %d bytes, want the first %d", len(got), len(data)-queued)
	}
}

// fakeConn is a gnet.Conn that is not gnet's.
type fakeConn struct{ gnet.Conn }

func TestInternalsRejectForeignConn(t *testing.T) {
	// Let a real connection fix the layout first (it is found once).
	h := startHookEngine(t)
	_, c := h.accept(t)
	on(t, c, func() {
		if _, err := PollerOf(c); err != nil {
			t.Error(err)
		}
	})
	_, err := PollerOf(fakeConn{})
	if !errors.Is(err, ErrInternals) {
		t.Fatalf("PollerOf(foreign) = %v, want ErrInternals", err)
	}
	if got := StealOutbound(&fakeConn{}, []byte("dst")); string(got) != "dst" {
		t.Fatalf("StealOutbound(foreign) = %q", got)
	}
	if !strings.Contains(fmt.Sprint(err), "gnet") {
		t.Errorf("error %q does not name gnet", err)
	}
}

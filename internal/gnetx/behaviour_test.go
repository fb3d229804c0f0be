package gnetx

import (
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// TestGnetVersion pins the gnet version every assumption of this package
// was checked against: it builds the proxyto binary and reads the gnet
// version from its build information (test binaries carry none). Another
// version must be re-checked line by line (doc.go lists the lines) before
// go.mod moves; the binary itself refuses to start with another (SelfCheck).
func TestGnetVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "proxyto")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/proxyto/proxyto/cmd/proxyto").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[0] == "dep" || f[0] == "=>") && f[1] == gnetModule {
			if f[0] == "=>" {
				t.Fatalf("gnet is replaced: %s", line)
			}
			if f[2] != GnetVersion {
				t.Fatalf("the binary links gnet %s; this package was written against %s", f[2], GnetVersion)
			}
			return
		}
	}
	t.Fatalf("gnet not in the binary's build information:\n%s", out)
}

// TestRearmAfterBufferedWrite: assumption 4. A write gnet has to buffer
// re-arms read interest on a paused connection, and so does the drain.
func TestRearmAfterBufferedWrite(t *testing.T) {
	h := startHookEngine(t)
	nc, c := h.accept(t)
	var p Poller
	var fd int
	var queued int
	on(t, c, func() {
		p, _ = PollerOf(c)
		fd = c.Fd()
		_ = p.Pause(c)
		_, _ = c.Write(bytes.Repeat([]byte("y"), 16<<20)) // the client does not read yet
		queued = c.OutboundBuffered()
	})
	if queued == 0 {
		t.Fatal("nothing queued: cannot test")
	}
	if m := epollMask(t, p.epfd, fd); m != readEvents|writeEvents {
		t.Fatalf("after a buffered write on a paused connection: mask %#x, want %#x (gnet re-arms reads)", m, readEvents|writeEvents)
	}
	on(t, c, func() { _ = p.Pause(c) })
	if _, err := io.ReadFull(nc, make([]byte, 16<<20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the drain", func() bool {
		var q int
		on(t, c, func() { q = c.OutboundBuffered() })
		return q == 0
	})
	if m := epollMask(t, p.epfd, fd); m != readEvents {
		t.Fatalf("after gnet drained a paused connection: mask %#x, want %#x (gnet re-arms reads)", m, readEvents)
	}
}

// TestUnreadBytesStay: assumption 5. Bytes OnTraffic does not consume are
// offered again with the next ones.
func TestUnreadBytesStay(t *testing.T) {
	var seen atomic.Int64
	h := startHookEngineWith(t, func(c gnet.Conn) { seen.Store(int64(c.InboundBuffered())) }, nil)
	nc, _ := h.accept(t)
	if _, err := nc.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first read", func() bool { return seen.Load() == 3 })
	if _, err := nc.Write([]byte("defg")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unread bytes offered again with the new ones", func() bool { return seen.Load() == 7 })
}

// TestBareHangupClosesUnread: assumption 6. A paused connection whose both
// halves are shut is closed by gnet without reading what the peer sent.
func TestBareHangupClosesUnread(t *testing.T) {
	inSocket := make(chan int, 1)
	h := startHookEngineWith(t, nil, func(c gnet.Conn, _ error) {
		n, _ := unix.IoctlGetInt(c.Fd(), unix.SIOCINQ)
		inSocket <- n + c.InboundBuffered()
	})
	nc, c := h.accept(t)
	on(t, c, func() {
		p, _ := PollerOf(c)
		_ = p.Pause(c)
	})
	if _, err := nc.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	_ = nc.CloseWrite()
	time.Sleep(10 * time.Millisecond) // let the FIN arrive (not a timing assertion)
	on(t, c, func() { _ = unix.Shutdown(c.Fd(), unix.SHUT_WR) })
	select {
	case n := <-inSocket:
		if n != len("unread") {
			t.Fatalf("at OnClose %d bytes were unread, want %d (gnet closes a bare EPOLLHUP without reading)", n, len("unread"))
		}
	case <-time.After(testDeadline):
		t.Fatal("gnet did not close the hung-up connection")
	}
}

// TestOnCloseBeforeClose: assumption 7. Inside OnClose the descriptor is
// still open (Dup works and names the same socket) and the unread bytes are
// still in gnet's buffer.
func TestOnCloseBeforeClose(t *testing.T) {
	type result struct {
		dupOK, sameSocket bool
		unread            string
	}
	res := make(chan result, 1)
	h := startHookEngineWith(t, func(gnet.Conn) {} /* leave everything unread */, func(c gnet.Conn, _ error) {
		var r result
		if fd, err := c.Dup(); err == nil {
			r.dupOK = true
			a, _ := unix.Getsockname(fd)
			b, _ := unix.Getsockname(c.Fd())
			r.sameSocket = a != nil && b != nil && sockaddrString(a) == sockaddrString(b)
			_ = unix.Close(fd)
		}
		buf, _ := c.Peek(-1)
		r.unread = string(buf)
		res <- r
	})
	nc, _ := h.accept(t)
	if _, err := nc.Write([]byte("left")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // let gnet read it first (not a timing assertion)
	_ = nc.Close()
	select {
	case r := <-res:
		if !r.dupOK || !r.sameSocket || r.unread != "left" {
			t.Fatalf("in OnClose: dup ok %v, same socket %v, unread %q; want true, true, \"left\"", r.dupOK, r.sameSocket, r.unread)
		}
	case <-time.After(testDeadline):
		t.Fatal("OnClose not called")
	}
}

func sockaddrString(sa unix.Sockaddr) string {
	if v, ok := sa.(*unix.SockaddrInet4); ok {
		return string(v.Addr[:]) + string(rune(v.Port))
	}
	return ""
}

// TestPeerGone: an idle connection is alive until its peer closes or sends.
func TestPeerGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer func(nc io.WriteCloser)
		want bool
	}{
		{"idle", func(io.WriteCloser) {}, false},
		{"peer closed", func(nc io.WriteCloser) { _ = nc.Close() }, true},
		{"stray bytes", func(nc io.WriteCloser) { _, _ = nc.Write([]byte("x")) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHookEngineWith(t, func(gnet.Conn) {}, nil) // leave bytes unread
			nc, c := h.accept(t)
			on(t, c, func() {
				p, _ := PollerOf(c)
				_ = p.Pause(c) // gnet must not read first: the peek sees the socket
			})
			tc.peer(nc)
			time.Sleep(10 * time.Millisecond) // let the FIN or byte arrive (not a timing assertion)
			var got bool
			on(t, c, func() { got = PeerGone(c) })
			if got != tc.want {
				t.Fatalf("PeerGone = %v, want %v", got, tc.want)
			}
		})
	}
}

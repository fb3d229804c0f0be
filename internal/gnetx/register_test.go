package gnetx

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// dialOnLoop connects a non-blocking socket to addr and registers it on c's
// loop with ctx; it runs on the loop.
func dialOnLoop(t *testing.T, c gnet.Conn, addr *net.TCPAddr, ctx any) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		_ = unix.Close(fd)
		return err
	}
	if _, err := PollerOf(c); err != nil {
		return err
	}
	return Register(c.EventLoop(), fd, sa, addr, ctx)
}

// TestRegister: assumption 10. A socket a loop connected itself becomes a
// gnet connection of that loop, OnOpen sees the context given, and bytes
// written before the connect completed go out once it did.
func TestRegister(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		_, _ = io.Copy(s, s)
	}()
	h := startHookEngine(t)
	_, c := h.accept(t)
	var rerr error
	on(t, c, func() {
		if rerr = dialOnLoop(t, c, ln.Addr().(*net.TCPAddr), "marker"); rerr == nil {
			// OnOpen ran inside Register; write at once, maybe before the
			// connect finished: gnet queues it.
		}
	})
	if rerr != nil {
		t.Fatalf("Register: %v", rerr)
	}
	var up gnet.Conn
	select {
	case up = <-h.opened:
	case <-time.After(testDeadline):
		t.Fatal("OnOpen not called for the registered connection")
	}
	var ctx any
	on(t, up, func() {
		ctx = up.Context()
		_, _ = up.Write([]byte("ping"))
	})
	if ctx != "marker" {
		t.Fatalf("context %v, want the one given to Register", ctx)
	}
	waitFor(t, "the echo", func() bool { got, _ := h.read(); return got == "ping" })
}

// TestRegisterRefused: a connect the peer refuses ends in OnClose, and the
// socket's error says why (read inside OnClose, before gnet closes it).
func TestRegisterRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close() // nothing listens there now
	soErr := make(chan int, 1)
	h := startHookEngineWith(t, nil, func(c gnet.Conn, _ error) {
		if c.Context() == "refused" {
			v, _ := unix.GetsockoptInt(c.Fd(), unix.SOL_SOCKET, unix.SO_ERROR)
			soErr <- v
		}
	})
	_, c := h.accept(t)
	var rerr error
	on(t, c, func() {
		rerr = dialOnLoop(t, c, addr, "refused")
	})
	if rerr != nil {
		if errors.Is(rerr, unix.ECONNREFUSED) {
			return // refused at once (loopback often is): nothing was registered
		}
		t.Fatalf("Register: %v", rerr)
	}
	var up gnet.Conn
	select {
	case up = <-h.opened:
	case <-time.After(testDeadline):
		t.Fatal("OnOpen not called")
	}
	on(t, up, func() { _, _ = up.Write([]byte("x")) })
	select {
	case v := <-soErr:
		if syscall.Errno(v) != unix.ECONNREFUSED && v != 0 {
			t.Fatalf("SO_ERROR %v in OnClose", syscall.Errno(v))
		}
	case <-time.After(testDeadline):
		t.Fatal("OnClose not called for a refused connect")
	}
}

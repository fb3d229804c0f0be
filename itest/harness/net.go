package harness

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"time"
)

// FreeAddr returns "127.0.0.1:P" for a port that was free a moment ago. The
// port is released before returning, so another process could take it; the
// Start* helpers that use it retry on "address already in use".
func FreeAddr(t TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: finding a free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ClosedAddr returns a loopback address on which nothing listens, so a dial to
// it is refused.
func ClosedAddr(t TB) string { return FreeAddr(t) }

// Port returns the port number of "host:port".
func Port(t TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("harness: bad address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("harness: bad port in %q: %v", addr, err)
	}
	return n
}

// waitListening polls addr until a TCP connect succeeds, stop is closed, or ctx
// ends. An external process offers no readiness signal other than its port
// accepting, so this is the one place the harness polls.
func waitListening(ctx context.Context, addr string, stop <-chan struct{}) error {
	var d net.Dialer
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errors.New("process exited before listening")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// IsReset reports whether err is a connection reset or broken pipe: the ways a
// peer's abrupt close shows up on this side.
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// closeWrite half-closes c when it supports it, and fully closes it otherwise.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// RefusedAddr returns a loopback address on which every connection is
// refused until the test ends: its port is bound but never listened on, so,
// unlike ClosedAddr's, no other socket can take it meanwhile.
func RefusedAddr(t TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("harness: socket: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatalf("harness: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		t.Fatalf("harness: getsockname: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}

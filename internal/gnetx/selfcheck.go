package gnetx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// SelfCheck proves at start-up that the binary links the gnet version this
// package was written against, and that the internals poll.go relies on are
// what it expects: it runs a one-loop gnet engine on loopback, connects to
// it, and on the accepted connection finds the epoll fd, masks and restores
// read interest (epoll_ctl fails unless the fd is in that epoll set), and
// takes its outbound buffer; then it connects a socket from the loop and
// registers it (Register). It takes a few milliseconds.
func SelfCheck() error {
	if err := checkVersion(); err != nil {
		return err
	}
	h := &checkHandler{result: make(chan error, 1), booted: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(h, "tcp://127.0.0.1:0", gnet.WithNumEventLoop(1), gnet.WithLogger(Logger{}))
	}()
	select {
	case <-h.booted:
	case err := <-done:
		return fmt.Errorf("proxyto: self-check engine: %v", err)
	case <-time.After(5 * time.Second):
		return errors.New("proxyto: self-check engine did not start")
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.eng.Stop(ctx)
		<-done
	}()
	addr := h.addr()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("proxyto: self-check dial: %v", err)
	}
	defer c.Close()
	select {
	case err := <-h.result:
		return err
	case <-time.After(5 * time.Second):
		return errors.New("proxyto: self-check timed out")
	}
}

type checkHandler struct {
	gnet.BuiltinEventEngine
	eng        gnet.Engine
	booted     chan struct{}
	result     chan error
	port       string
	checked    bool // the first accepted connection was checked (loop only)
	registered bool // OnOpen saw the connection Register made (loop only)
}

// registerMarker is the context of the connection the self-check registers.
type registerMarker struct{}

func (h *checkHandler) addr() string { return h.port }

func (h *checkHandler) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	fd, err := eng.Dup()
	if err == nil {
		f := ListenerAddr(fd)
		h.port = f
	}
	close(h.booted)
	return gnet.None
}

func (h *checkHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if _, ok := c.Context().(registerMarker); ok {
		h.registered = true
		return nil, gnet.Close
	}
	if h.checked {
		return nil, gnet.Close // the registered connection's other end
	}
	h.checked = true
	err := checkConn(c)
	if err == nil {
		err = h.checkRegister(c)
	}
	h.result <- err
	return nil, gnet.None
}

// checkRegister connects a socket to the self-check's own listener from the
// loop and registers it (Register): gnet must call OnOpen with its context.
func (h *checkHandler) checkRegister(c gnet.Conn) error {
	ap, err := netip.ParseAddrPort(h.port)
	if err != nil {
		return fmt.Errorf("proxyto: self-check address %q: %v", h.port, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("proxyto: self-check socket: %v", err)
	}
	sa := &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		return fmt.Errorf("proxyto: self-check connect: %v", err)
	}
	if err := Register(c.EventLoop(), fd, sa, net.TCPAddrFromAddrPort(ap), registerMarker{}); err != nil {
		return fmt.Errorf("%w: register: %v", ErrInternals, err)
	}
	if !h.registered {
		return fmt.Errorf("%w: a registered connection was not opened", ErrInternals)
	}
	return nil
}

func checkConn(c gnet.Conn) error {
	p, err := PollerOf(c)
	if err != nil {
		return err
	}
	if err := p.Pause(c); err != nil {
		return fmt.Errorf("%w: pause: %v", ErrInternals, err)
	}
	if err := p.Resume(c); err != nil {
		return fmt.Errorf("%w: resume: %v", ErrInternals, err)
	}
	if got := StealOutbound(c, nil); len(got) != 0 {
		return fmt.Errorf("%w: outbound buffer not empty on a new connection", ErrInternals)
	}
	return nil
}

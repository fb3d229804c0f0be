package gnetx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// SelfCheck proves at start-up that the binary links the gnet version this
// package was written against, and that the internals poll.go relies on are
// what it expects: it runs a one-loop gnet engine on loopback, connects to
// it, and on the accepted connection finds the epoll fd, masks and restores
// read interest (epoll_ctl fails unless the fd is in that epoll set), and
// takes its outbound buffer. It takes a few milliseconds.
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
	eng    gnet.Engine
	booted chan struct{}
	result chan error
	port   string
}

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
	h.result <- checkConn(c)
	return nil, gnet.None
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

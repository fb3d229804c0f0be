package gnetx

import (
	"fmt"
	"net"
	"reflect"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Loop-side registration of an outbound connection (assumption 10 of the
// package doc). gnet's public way to add an outbound connection to a loop,
// EventLoop.Enroll, hands the socket to a goroutine of its own pool, which
// duplicates it and triggers the loop: two thread hand-offs per upstream. A
// loop that connects a non-blocking socket itself can register it at once
// with gnet's own constructor and registration, which Enroll ends in too
// (eventloop_unix.go:113-200: newStreamConn, then register0 on the loop).

//go:linkname newStreamConn github.com/panjf2000/gnet/v2.newStreamConn
func newStreamConn(proto string, fd int, el unsafe.Pointer, sa unix.Sockaddr, localAddr, remoteAddr net.Addr) unsafe.Pointer

//go:linkname register0 github.com/panjf2000/gnet/v2.(*eventloop).register0
func register0(el unsafe.Pointer, c unsafe.Pointer) error

// Register makes fd, a non-blocking TCP socket connected or connecting to
// sa (remote), a gnet connection of el with context ctx. It must run on el's
// loop, after PollerOf found gnet's layout there: gnet calls OnOpen for the
// new connection before Register returns. On error fd is closed.
func Register(el gnet.EventLoop, fd int, sa unix.Sockaddr, remote net.Addr, ctx any) error {
	if layout.err != nil || layout.connType == nil {
		_ = unix.Close(fd)
		return fmt.Errorf("%w: layout not found yet", ErrInternals)
	}
	elp := reflect.ValueOf(el).UnsafePointer()
	c := newStreamConn("tcp", fd, elp, sa, nil, remote)
	*(*any)(unsafe.Add(c, layout.ctxOff)) = ctx
	return register0(elp, c)
}

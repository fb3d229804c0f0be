package gnetx

import (
	"syscall"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// PeerGone reports whether an idle connection can no longer carry a request:
// bytes wait in gnet's buffer, or a non-blocking MSG_PEEK on the socket sees
// EOF, stray bytes or an error; only "would block" means alive. It is one
// system call, for a pooled upstream connection about to be reused, which the
// upstream may have closed before gnet noticed. Call it on c's loop.
func PeerGone(c gnet.Conn) bool {
	if c == nil || c.InboundBuffered() > 0 {
		return true
	}
	var b [1]byte
	// A raw recvfrom: unix.Recvfrom's sockaddr would escape to the heap.
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(c.Fd()), uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN
}

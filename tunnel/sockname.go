package tunnel

import (
	"net"
	"strconv"

	"golang.org/x/sys/unix"
)

// fdListenerAddr returns "ip:port" of a listening socket and closes fd.
func fdListenerAddr(fd int) string {
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return ""
	}
	if in4, ok := sa.(*unix.SockaddrInet4); ok {
		return net.JoinHostPort(net.IP(in4.Addr[:]).String(), strconv.Itoa(in4.Port))
	}
	return ""
}

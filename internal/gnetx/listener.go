package gnetx

import (
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// RetireListeners makes the process stop accepting on addr's port: every
// listening socket of this process on that port (gnet's per-loop
// SO_REUSEPORT listeners) is replaced, descriptor number and all, by a
// listener on an ephemeral loopback port that nobody connects to. Once none
// is left on the port, new connections are refused. gnet is not told: it
// keeps polling nothing and, at shutdown, closes the replacements. Replacing
// rather than closing keeps the descriptor numbers valid, so no stale event
// or later close in gnet can touch a descriptor reused by another
// connection. gnet has no way to stop accepting without stopping its loops.
func RetireListeners(addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	want, err := strconv.Atoi(port)
	if err != nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, ent := range ents {
		fd, err := strconv.Atoi(ent.Name())
		if err != nil || fd < 3 {
			continue
		}
		if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc != 1 {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		family := unix.AF_INET
		switch v := sa.(type) {
		case *unix.SockaddrInet4:
			if v.Port != want {
				continue
			}
		case *unix.SockaddrInet6:
			if v.Port != want {
				continue
			}
			family = unix.AF_INET6
		default:
			continue
		}
		_ = replaceWithIdleListener(fd, family)
	}
}

// replaceWithIdleListener dup3s a fresh non-blocking listener on an
// ephemeral loopback port over fd.
func replaceWithIdleListener(fd, family int) error {
	s, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	var sa unix.Sockaddr = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if family == unix.AF_INET6 {
		sa = &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16()}
	}
	if err := unix.Bind(s, sa); err != nil {
		return err
	}
	if err := unix.Listen(s, 1); err != nil {
		return err
	}
	return unix.Dup3(s, fd, unix.O_CLOEXEC)
}

// ListenerAddr returns "ip:port" of a listening IPv4 socket and closes fd.
func ListenerAddr(fd int) string {
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

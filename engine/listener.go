package engine

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// reservePort binds (without listening) a socket to addr with SO_REUSEPORT
// and returns it with the bound "host:port". gnet's per-loop listeners then
// join its reuse group on that port. The caller closes the socket once they
// are bound. With shared, the group may already hold other processes'
// listeners.
func reservePort(addr string, shared bool) (int, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return -1, "", err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return -1, "", err
	}
	ip := netip.IPv6Unspecified()
	family := unix.AF_INET6
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			ips, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
			if lerr != nil || len(ips) == 0 {
				return -1, "", &net.AddrError{Err: "cannot resolve", Addr: host}
			}
			a = ips[0]
		}
		ip = a.Unmap()
		if ip.Is4() {
			family = unix.AF_INET
		}
	}
	// Unless shared, first an exclusive bind (no SO_REUSEPORT): it fails
	// while anything, another proxyto included, listens on the port, so that
	// two processes never share a port by accident. It also picks the port
	// for ":0". Shared, the reuse-group bind below picks it.
	bound := uint16(p)
	if !shared {
		probe, port, err := bindSocket(family, ip, bound, false)
		if err != nil {
			return -1, "", err
		}
		_ = unix.Close(probe)
		bound = port
	}
	fd, bound, err := bindSocket(family, ip, bound, true)
	if err != nil {
		return -1, "", err
	}
	if host == "" {
		return fd, net.JoinHostPort("", strconv.Itoa(int(bound))), nil
	}
	return fd, netip.AddrPortFrom(ip, bound).String(), nil
}

// bindSocket binds a TCP socket (SO_REUSEADDR, and SO_REUSEPORT when
// reuse) to ip:port and returns it with the port bound.
func bindSocket(family int, ip netip.Addr, port uint16, reuse bool) (int, uint16, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (int, uint16, error) {
		_ = unix.Close(fd)
		return -1, 0, os.NewSyscallError(op, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if reuse {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sockaddr(ip, port)); err != nil {
		return fail("bind", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	switch v := sa.(type) {
	case *unix.SockaddrInet4:
		port = uint16(v.Port)
	case *unix.SockaddrInet6:
		port = uint16(v.Port)
	}
	return fd, port, nil
}

func sockaddr(ip netip.Addr, port uint16) unix.Sockaddr {
	if ip.Is4() {
		return &unix.SockaddrInet4{Addr: ip.As4(), Port: int(port)}
	}
	return &unix.SockaddrInet6{Addr: ip.As16(), Port: int(port)}
}

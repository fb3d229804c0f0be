package main

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// bufPool holds the relay buffers. A connection holds one only while bytes
// move through it: an idle tunnel costs its goroutines and nothing else.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// errEOF occurs when pump's source ended cleanly (FIN), as opposed to a
// reset or a failed write.
var errEOF = errors.New("proxyto: scaletest: end of stream")

// pump copies src to dst until src ends or fails; it returns errEOF on a
// clean end. dst may be src (an echo).
//
// io.Copy between two TCP connections splices, but holds a pipe pair (two
// more descriptors) per direction for the copy's whole life: 100,000 idle
// tunnels would triple the upstream's descriptors. pump waits for
// readability holding nothing, then moves what is there through a pooled
// buffer.
func pump(dst, src *net.TCPConn) error {
	rc, err := src.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var (
			bp   *[]byte
			n    int
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			bp = bufPool.Get().(*[]byte)
			for {
				n, rerr = unix.Read(int(fd), *bp)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				bufPool.Put(bp)
				bp = nil
				return false // wait for readability, holding no buffer
			}
			return true
		})
		if err == nil && rerr != nil {
			err = rerr
		}
		if err != nil || n <= 0 {
			if bp != nil {
				bufPool.Put(bp)
			}
			if err == nil {
				err = errEOF
			}
			return err
		}
		_, werr := dst.Write((*bp)[:n])
		bufPool.Put(bp)
		if werr != nil {
			return werr
		}
	}
}

// relay pumps a and b into each other until both directions ended, passing
// a FIN on as a half-close, then closes both. A failure (reset) on either
// side closes both at once.
func relay(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	one := func(dst, src *net.TCPConn) {
		defer wg.Done()
		if err := pump(dst, src); err == errEOF {
			_ = dst.CloseWrite()
			return
		}
		closeBoth()
	}
	wg.Add(2)
	go one(b, a)
	one(a, b)
	wg.Wait()
	closeBoth()
}

// noPortBind makes a dial bound to a source address pick its port at
// connect time (IP_BIND_ADDRESS_NO_PORT), so one port serves many
// destinations and a source address gives each destination the whole
// ephemeral range.
func noPortBind(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// Package bridge joins a TLS session to one end of a socketpair, so that an
// event loop without TLS (gnet) can treat the other end as a plain stream:
// https upstreams (upstream) and the TLS client listener (tlsfront) both
// hand the event loop such an end.
//
//	Start(tc)            socketpair; returns the outer end
//	├── toPair           tc → inner end: first what the handshake left in
//	│                    tls.Conn; then wait readable (no buffer), read TLS,
//	│                    drain what tls.Conn already holds, write
//	└── fromPair         inner end → tc: wait readable (no buffer), read, write
//
// An idle bridge holds no copy buffer: each direction parks in the runtime
// poller on a one-byte MSG_PEEK, and takes a pooled buffer only once bytes
// are there; after idleRelease without traffic the tls.Conn's own read
// buffers are given back too (release.go). What an idle bridge costs is two
// parked goroutines and the TLS session's state (tlsfront's idle-cost test
// measures it).
package bridge

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrSocketpair occurs when the socketpair for a bridge cannot be made (out
// of descriptors).
var ErrSocketpair = errors.New("proxyto: socketpair for TLS bridge failed")

// BufSize is the size of the pooled copy buffers: the most plaintext one TLS
// record carries, so one tls.Conn Read never returns more, and one Write of
// a full buffer makes one record.
const BufSize = 16 << 10

// bufs recycles copy buffers; held counts those taken and not yet returned,
// so tests can check that idle bridges hold none.
var (
	bufs = sync.Pool{New: func() any { b := make([]byte, BufSize); return &b }}
	held atomic.Int64
)

func getBuf() *[]byte {
	held.Add(1)
	return bufs.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	bufs.Put(b)
	held.Add(-1)
}

// BuffersHeld returns how many copy buffers bridges hold right now: 0 when
// every bridge is idle. Safe for concurrent use.
func BuffersHeld() int64 { return held.Load() }

// Start joins tc, whose handshake is complete, to a new socketpair and
// returns the other end: bytes written to it are sent on tc, bytes tc
// receives can be read from it. Half-closes pass through (CloseWrite on the
// returned end becomes a TLS close_notify; the peer's close_notify or FIN
// becomes EOF on the returned end). Closing the returned end, or any error on
// tc, closes tc; closing tc closes the bridge. Any deadline on tc is
// cleared. On error tc is closed.
func Start(tc *tls.Conn) (net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		_ = tc.Close()
		return nil, ErrSocketpair
	}
	inner, err1 := fileConn(fds[0])
	outer, err2 := fileConn(fds[1])
	if err1 != nil || err2 != nil {
		_ = tc.Close()
		closeAll(inner, outer)
		return nil, ErrSocketpair
	}
	_ = tc.SetDeadline(time.Time{})
	b := &bridge{pair: inner.(*net.UnixConn), tc: tc}
	b.tcWait = newWaiter(tc.NetConn())
	b.pairWait = newWaiter(b.pair)
	b.live.Store(2)
	go b.toPair()
	go b.fromPair()
	return outer, nil
}

// bridge joins the socketpair's inner end to the TLS session.
type bridge struct {
	pair     *net.UnixConn
	tc       *tls.Conn
	tcWait   *waiter // nil when tc's transport has no descriptor to poll
	pairWait *waiter
	live     atomic.Int32 // directions still copying
}

// idleRelease is how long a bridge's TLS side stays quiet before tls.Conn's
// read buffers are given back (release.go). Shorter would cost a busy
// connection a fresh 20 KiB buffer per burst; longer keeps them longer on
// clients that went quiet.
const idleRelease = 2 * time.Second

// toPair copies from the TLS session to the pair. At EOF (close_notify or a
// FIN at a record boundary) it half-closes the pair.
func (b *bridge) toPair() {
	// The handshake may have read application data along with its last
	// flight (a client's first request right behind its Finished): tc
	// holds it, and the socket's readability will not announce it.
	err := b.drainHeld()
	released := false
	for err == nil {
		if err = b.waitTLS(released); err != nil {
			break
		}
		bp := getBuf()
		err = b.drainTLS(*bp)
		putBuf(bp)
		released = false
	}
	if err == io.EOF {
		err = b.pair.CloseWrite()
	}
	b.finish(err)
}

// waitTLS waits until tc's socket is readable. Unless released says the
// buffers went back since the last read, it first waits only idleRelease,
// then releases them and waits on.
func (b *bridge) waitTLS(released bool) error {
	if released || b.tcWait == nil || !CanRelease() {
		return b.tcWait.wait()
	}
	raw := b.tc.NetConn()
	_ = raw.SetReadDeadline(time.Now().Add(idleRelease))
	err := b.tcWait.wait()
	_ = raw.SetReadDeadline(time.Time{})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	release(b.tc)
	return b.tcWait.wait()
}

// past is a read deadline already gone: a Read with it returns what the
// tls.Conn holds decrypted or in complete records, and never waits.
var past = time.Unix(1, 0)

// drainTLS runs when tc's socket is readable: one read (which may wait for
// the rest of a record the socket holds part of), then more reads with a
// past deadline for whatever tls.Conn has already buffered, which the
// socket's readability would not announce again.
func (b *bridge) drainTLS(buf []byte) error {
	n, err := b.tc.Read(buf)
	if b.tcWait == nil {
		_, werr := b.pair.Write(buf[:n])
		return cmpErr(err, werr)
	}
	deadline := false
	for {
		if n > 0 {
			if _, werr := b.pair.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			break
		}
		if !deadline {
			_ = b.tc.SetReadDeadline(past)
			deadline = true
		}
		n, err = b.tc.Read(buf)
	}
	if deadline {
		// tls.Conn treats a timeout as temporary: the session stays
		// usable and a partial record stays buffered.
		_ = b.tc.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
	}
	return err
}

// drainHeld writes to the pair what tc already holds decrypted or in
// complete records, without waiting for the socket.
func (b *bridge) drainHeld() error {
	if b.tcWait == nil {
		return nil // reads block: the first one returns what tc holds
	}
	bp := getBuf()
	defer putBuf(bp)
	_ = b.tc.SetReadDeadline(past)
	defer b.tc.SetReadDeadline(time.Time{})
	for {
		n, err := b.tc.Read(*bp)
		if n > 0 {
			if _, werr := b.pair.Write((*bp)[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil
		case err != nil:
			return err
		}
	}
}

// cmpErr returns the first non-nil of a read and a write error.
func cmpErr(rerr, werr error) error {
	if werr != nil {
		return werr
	}
	return rerr
}

// fromPair copies from the pair to the TLS session. At EOF it sends
// close_notify (CloseWrite), keeping the other direction open.
func (b *bridge) fromPair() {
	var err error
	for err == nil {
		if err = b.pairWait.wait(); err != nil {
			break
		}
		bp := getBuf()
		var n int
		n, err = b.pair.Read(*bp)
		if n > 0 {
			if _, werr := b.tc.Write((*bp)[:n]); werr != nil {
				err = werr
			}
		}
		putBuf(bp)
	}
	if err == io.EOF {
		err = b.tc.CloseWrite()
	}
	b.finish(err)
}

// finish ends one direction. The last to finish, or the first to fail,
// closes both ends, which wakes the other direction with an error.
func (b *bridge) finish(err error) {
	if err != nil || b.live.Add(-1) == 0 {
		_ = b.tc.Close()
		_ = b.pair.Close()
	}
}

// waiter parks a goroutine until a socket has bytes (or EOF, or an error)
// to read, without a buffer: the runtime poller calls ready, which peeks
// one byte without taking it. A nil *waiter never waits: the read that
// follows blocks instead, holding its buffer.
type waiter struct {
	rc    syscall.RawConn
	ready func(fd uintptr) bool
	peek  [1]byte
}

func newWaiter(c net.Conn) *waiter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &waiter{rc: rc}
	w.ready = func(fd uintptr) bool {
		// recvfrom(MSG_PEEK|MSG_DONTWAIT): EAGAIN means nothing yet,
		// anything else (a byte, 0 for EOF, an error) is for Read to see.
		_, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&w.peek[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		return e != unix.EAGAIN
	}
	return w
}

// wait returns once the socket is readable, or the error of a closed
// connection.
func (w *waiter) wait() error {
	if w == nil {
		return nil
	}
	return w.rc.Read(w.ready)
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "bridge")
	defer f.Close()
	return net.FileConn(f)
}

func closeAll(cs ...net.Conn) {
	for _, c := range cs {
		if c != nil {
			_ = c.Close()
		}
	}
}

package upstream

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/proxystatus"
)

// gnet has no TLS (and its maintainers plan none), so an https upstream is handshaken here,
// off the loops, and bridged to one end of a socketpair whose other end the
// engine enrolls on its loop as if it were a plain TCP upstream. Two goroutines
// and two 32 KiB buffers per https upstream connection are the price; plain
// upstreams pay nothing.

// bridgeBufs recycles the copy buffers of finished bridges.
var bridgeBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (d *Dialer) tlsBridge(ctx context.Context, raw net.Conn, host string) (net.Conn, error) {
	var cfg *tls.Config
	if d.TLS != nil {
		cfg = d.TLS.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		pe := Classify(err)
		if pe.Type != proxystatus.TLSCertificateError && pe.Type != proxystatus.ConnectionTimeout {
			pe = proxystatus.New(proxystatus.TLSProtocolError, "TLS handshake with upstream failed")
		}
		return nil, pe
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		_ = tc.Close()
		return nil, proxystatus.New(proxystatus.ProxyInternalError, "socketpair failed")
	}
	inner, err1 := fileConn(fds[0])
	outer, err2 := fileConn(fds[1])
	if err1 != nil || err2 != nil {
		_ = tc.Close()
		closeAll(inner, outer)
		return nil, proxystatus.New(proxystatus.ProxyInternalError, "socketpair failed")
	}
	b := &bridge{pair: inner.(*net.UnixConn), tc: tc}
	b.live.Store(2)
	go b.pipe(true)
	go b.pipe(false)
	return outer, nil
}

// bridge joins the socketpair end to the TLS session.
type bridge struct {
	pair *net.UnixConn
	tc   *tls.Conn
	live atomic.Int32 // directions still copying
}

// pipe copies one direction, passing on half-closes: EOF from the engine side
// becomes a TLS close_notify (CloseWrite), EOF from the upstream becomes
// shutdown(SHUT_WR) on the pair. The last direction to finish, or the first
// to fail, closes both ends.
func (b *bridge) pipe(toUpstream bool) {
	bp := bridgeBufs.Get().(*[]byte)
	defer bridgeBufs.Put(bp)
	var err error
	if toUpstream {
		_, err = io.CopyBuffer(b.tc, onlyReader{b.pair}, *bp)
		if err == nil {
			err = b.tc.CloseWrite()
		}
	} else {
		_, err = io.CopyBuffer(onlyWriter{b.pair}, b.tc, *bp)
		if err == nil {
			err = b.pair.CloseWrite()
		}
	}
	if err != nil || b.live.Add(-1) == 0 {
		_ = b.tc.Close()
		_ = b.pair.Close()
	}
}

// onlyReader and onlyWriter hide ReadFrom/WriteTo so io.CopyBuffer uses the
// given buffer instead of allocating.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

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

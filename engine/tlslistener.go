package engine

import (
	"context"
	"net"
	"net/netip"
	"os"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/tlsfront"
)

// The TLS client listener: gnet has no TLS, so tlsfront accepts, reads a
// trusted peer's PROXY header and runs the handshake off the loops, then
// hands over the plaintext end of a socketpair bridged to the TLS session.
// The engine enrolls that end on the loop with the fewest connections, with
// a context that carries the client's address (gnet's RemoteAddr of a
// socketpair says nothing), and from OnOpen on it is a client like any
// other: the same limits, heads, exchanges and drain.

// tlsClient is the gnet context of a connection the TLS listener handed
// over, until its OnOpen makes it a clientConn.
type tlsClient struct {
	client netip.AddrPort // the TCP peer, or the client its PROXY header named
}

// newTLSFront loads the certificate pair and prepares the TLS listener's
// server; Start gives it its socket.
func (e *Engine) newTLSFront() (*tlsfront.Server, error) {
	return tlsfront.New(tlsfront.Config{
		CertFile:         e.cfg.TLSCertFile,
		KeyFile:          e.cfg.TLSKeyFile,
		HandshakeTimeout: e.cfg.ClientHeaderTimeout,
		MaxHandshakes:    tlsHandshakes,
		ProxyPeers:       e.cfg.ProxyPeers,
		Handoff:          e.handoffTLS,
		Observer:         e.cfg.TLSObserver,
		Logf:             e.cfg.Logf,
	})
}

// listenTLS binds the TLS listener's socket: the same exclusive-bind check
// as the plain listener (a port in use refuses to start unless ReusePort),
// then one listening socket, whose accept loop is tlsfront's.
// It returns the listener and its bound "host:port".
func listenTLS(addr string, shared bool) (net.Listener, string, error) {
	fd, bound, err := reservePort(addr, shared)
	if err != nil {
		return nil, "", err
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		_ = unix.Close(fd)
		return nil, "", os.NewSyscallError("listen", err)
	}
	f := os.NewFile(uintptr(fd), "tls-listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	return ln, bound, err
}

// handoffTLS runs on a handshake's goroutine: it enrolls the plaintext end
// on a loop. Like a dial's enrollment, the result is not awaited; gnet
// closes the connection if it cannot take it (the engine is stopping).
func (e *Engine) handoffTLS(c tlsfront.Conn) {
	ctx := gnet.NewContext(context.Background(), &tlsClient{client: c.Client})
	if _, err := e.gnet.Register(gnet.NewNetConnContext(ctx, c.Plain)); err != nil {
		_ = c.Plain.Close()
	}
}

// ReloadTLS reads the TLS listener's certificate and key again: new
// handshakes use the new pair, established connections keep theirs; a pair
// that fails to load keeps the old one and is returned as an error. Without
// a TLS listener it does nothing. Safe for concurrent use.
func (e *Engine) ReloadTLS() error {
	if e.tls == nil {
		return nil
	}
	return e.tls.Reload()
}

// TLSAddr is the bound TLS listener address, or "" without one.
func (e *Engine) TLSAddr() string { return e.tlsAddr }

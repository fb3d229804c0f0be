// Package tlsfront is proxyto's TLS client listener: clients connect with
// TLS and then speak exactly what they speak to the plain listener. gnet has
// no TLS, so the handshake happens here, off the event loops, and the engine
// receives a plaintext stream it enrolls like any accepted connection.
//
//	Server.Serve(ln)                     accept loop (one goroutine)
//	└── handle(conn)                     one goroutine per connection, under
//	    │                                one deadline (HandshakeTimeout)
//	    ├── PROXY header                 peers in ProxyPeers only: peeked,
//	    │                                parsed (httpparse), then consumed
//	    ├── Admit(client)                optional early refusal
//	    ├── TLS handshake                1.2 or 1.3, ALPN http/1.1, the pair
//	    │                                Reload last stored
//	    ├── bridge.Start                 socketpair; two goroutines copy
//	    └── Handoff(Conn)                the engine enrolls Conn.Plain
//
// A stalled or garbage handshake costs its own goroutine until the deadline
// and never touches an event loop or another client. Nothing here logs a
// handshake's details: the Observer hears a version, a closed failure
// class and a duration.
package tlsfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/internal/bridge"
)

// Errors returned by New, Reload and Serve.
var (
	// ErrCertificate occurs when the certificate and key files cannot be
	// read or do not form a pair. The error returned wraps it and the
	// reason crypto/tls gives (a file name, a PEM or key mismatch; never
	// key material).
	ErrCertificate = errors.New("proxyto: TLS certificate and key")

	// ErrNoHandoff occurs when New is given a Config without Handoff.
	ErrNoHandoff = errors.New("proxyto: tlsfront needs a Handoff function")

	// ErrClosed occurs when Serve is called after Close.
	ErrClosed = errors.New("proxyto: TLS listener closed")
)

// Conn is a client connection whose handshake is complete.
type Conn struct {
	// Plain is the engine's end of the bridge: plaintext in both
	// directions, a *net.UnixConn. The engine owns it (gnet's Enroll dups
	// its descriptor and closes it); closing it ends the TLS session.
	Plain net.Conn
	// Client is the client's address for everything (logs, per-IP limits,
	// ACLs): the PROXY header's source for a trusted peer that sent one
	// carrying an address, the TCP peer otherwise. Always unmapped.
	Client netip.AddrPort
	// Peer is the TCP peer: the load balancer when a PROXY header was read.
	Peer netip.AddrPort
	// Version is the negotiated TLS version (tls.VersionTLS12 or 13).
	Version uint16
}

// Config configures a Server. CertFile, KeyFile and Handoff are required.
type Config struct {
	// CertFile and KeyFile are PEM files: the certificate chain (leaf
	// first) and its private key. Reload reads them again.
	CertFile, KeyFile string

	// HandshakeTimeout bounds everything before Handoff, counted from
	// accept: the PROXY header and the TLS handshake. Use the engine's
	// client header timeout. Default 10s.
	HandshakeTimeout time.Duration

	// ProxyPeers are the peers that must send a PROXY protocol header
	// before their ClientHello; from them a missing or invalid header
	// closes the connection. The zero value trusts no peer: a PROXY header
	// then fails the handshake as not TLS.
	ProxyPeers httpparse.ProxyPeers

	// MaxHandshakes bounds connections between accept and Handoff. At the
	// bound the accept loop waits, so further clients queue in the
	// kernel's backlog instead of costing goroutines. Default 1024.
	MaxHandshakes int

	// Admit, when set, is asked about each client's address (after the
	// PROXY header, before the handshake); false closes the connection
	// without spending a handshake on it (a cheap early refusal, e.g. the
	// per-IP connection limit; the engine's own accounting stays
	// authoritative). Called concurrently. nil admits every client.
	Admit func(client netip.AddrPort) bool

	// Handoff receives each connection whose handshake completed, on that
	// connection's goroutine; it must not block for long (enroll, return).
	// Called concurrently. Required.
	Handoff func(Conn)

	// Observer hears of handshakes and certificate loads. nil: nothing.
	Observer Observer

	// Logf receives rare operational messages (accept errors). nil
	// discards them.
	Logf func(format string, args ...any)
}

// Server accepts TLS clients. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	tls     *tls.Config
	cert    atomic.Pointer[tls.Certificate]
	obs     Observer
	sem     chan struct{}
	ctx     context.Context // cancelled by Close: aborts handshakes
	cancel  context.CancelFunc
	wg      sync.WaitGroup // accept loops and handshakes
	mu      sync.Mutex
	lns     []net.Listener
	closed  bool
	timeout time.Duration
}

// New loads the certificate pair and returns a Server ready to Serve. A
// pair that fails to load is an error (and counted).
func New(cfg Config) (*Server, error) {
	if cfg.Handoff == nil {
		return nil, ErrNoHandoff
	}
	s := &Server{cfg: cfg, obs: cfg.Observer, timeout: cfg.HandshakeTimeout}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	n := cfg.MaxHandshakes
	if n <= 0 {
		n = 1024
	}
	s.sem = make(chan struct{}, n)
	if err := s.Reload(); err != nil {
		return nil, err
	}
	s.tls = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Reload reads CertFile and KeyFile again. On success new handshakes use the
// new pair; established connections keep theirs. On failure the previous
// pair stays in use and the error (wrapping ErrCertificate) is returned.
// Either way the Observer hears of it.
func (s *Server) Reload() error {
	c, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		s.obs.CertificateLoaded(false, time.Time{})
		return fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	s.cert.Store(&c)
	var notAfter time.Time
	if c.Leaf != nil {
		notAfter = c.Leaf.NotAfter
	}
	s.obs.CertificateLoaded(true, notAfter)
	return nil
}

// Serve accepts connections on ln until Close, or until ln fails for good,
// and hands each to its own goroutine. ln should be a TCP listener: reading
// a PROXY header peeks at the socket. It returns nil after Close. Serve may
// run on several listeners at once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.lns = append(s.lns, ln)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	var backoff time.Duration
	for {
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			return nil
		}
		c, err := ln.Accept()
		if err != nil {
			<-s.sem
			if s.ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors and the like: wait, as net/http does,
			// rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logf("tlsfront: accept: %v; retrying in %v", err, backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go s.handle(c)
	}
}

// Close stops every Serve loop and aborts the handshakes in progress, then
// waits for them. Connections already handed off are the engine's and are
// not touched. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	lns := s.lns
	s.lns = nil
	s.mu.Unlock()
	s.cancel()
	var err error
	for _, ln := range lns {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	}
	s.wg.Wait()
	return err
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// handle takes one accepted connection through PROXY header, admission and
// handshake to Handoff, or closes it.
func (s *Server) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() { <-s.sem }()
	start := time.Now()
	stop := context.AfterFunc(s.ctx, func() { _ = c.Close() })
	defer stop()
	fail := func(f Failure) {
		_ = c.Close()
		s.obs.HandshakeFailed(f, time.Since(start))
	}
	_ = c.SetDeadline(start.Add(s.timeout))

	peer := addrPort(c.RemoteAddr())
	client := peer
	if s.cfg.ProxyPeers.Contains(peer.Addr()) {
		h, err := readProxyHeader(c)
		if err != nil {
			fail(classify(err))
			return
		}
		client = h.Client(peer)
	}
	if s.cfg.Admit != nil && !s.cfg.Admit(client) {
		fail(FailRefused)
		return
	}

	hsStart := time.Now()
	tc := tls.Server(c, s.tls)
	if err := tc.Handshake(); err != nil {
		fail(classify(err))
		return
	}
	version := tc.ConnectionState().Version
	plain, err := bridge.Start(tc) // clears the deadline; closes tc on error
	if err != nil {
		s.obs.HandshakeFailed(FailOther, time.Since(start))
		return
	}
	s.obs.HandshakeDone(version, time.Since(hsStart))
	s.cfg.Handoff(Conn{Plain: plain, Client: client, Peer: peer, Version: version})
}

// addrPort returns a TCP address as an unmapped netip.AddrPort.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// proxyBufs holds the buffers PROXY headers are peeked into.
var proxyBufs = sync.Pool{New: func() any { b := make([]byte, httpparse.MaxProxyHeaderLen); return &b }}

// errNoDescriptor occurs when a trusted peer's connection has no socket to
// peek at (a listener that is not TCP).
var errNoDescriptor = errors.New("proxyto: connection has no socket to read a PROXY header from")

// readProxyHeader reads the PROXY header at the start of c and nothing
// after it: the socket is peeked until the header is complete, then exactly
// its bytes are read, so the ClientHello stays for crypto/tls.
func readProxyHeader(c net.Conn) (httpparse.ProxyHeader, error) {
	var h httpparse.ProxyHeader
	sc, ok := c.(syscall.Conn)
	if !ok {
		return h, errNoDescriptor
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return h, err
	}
	bp := proxyBufs.Get().(*[]byte)
	defer proxyBufs.Put(bp)
	buf := *bp
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		m, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EAGAIN:
			return false // nothing (new) yet: wait for more bytes
		case e != 0:
			perr = e
		case m == 0:
			perr = io.EOF
		default:
			n, perr = h.Parse(buf[:m])
			if perr == httpparse.ErrNeedMore {
				// The peeked bytes stay queued; the poller wakes this
				// again when more arrive.
				return false
			}
		}
		return true
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return httpparse.ProxyHeader{}, err
	}
	if _, err := io.ReadFull(c, buf[:n]); err != nil {
		return httpparse.ProxyHeader{}, err
	}
	return h, nil
}

// classify maps why a connection ended before its handshake completed to a
// Failure. It runs on failures only, so matching crypto/tls's messages
// (which name no client data) costs the hot path nothing; the tests pin
// each message.
func classify(err error) Failure {
	var ne net.Error
	var oe *net.OpError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return FailTimeout
	case errors.Is(err, httpparse.ErrProxyHeaderMissing), errors.Is(err, httpparse.ErrProxyHeaderMalformed),
		errors.Is(err, httpparse.ErrProxyHeaderTooLong), errors.Is(err, errNoDescriptor):
		return FailProxyHeader
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return FailEOF
	case errors.As(err, &rh):
		return FailNotTLS
	case errors.As(err, &oe) && oe.Op == "remote error":
		return FailClientRejected // the client sent an alert: most often it does not trust the certificate
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unsupported versions"):
		return FailVersion
	case strings.Contains(msg, "no cipher suite"), strings.Contains(msg, "no key exchanges"),
		strings.Contains(msg, "incompatible point formats"), strings.Contains(msg, "unsupported application protocols"):
		return FailNegotiation
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return FailNotTLS
	}
	return FailOther
}

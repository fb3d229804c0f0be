package tlsfront

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/itest/harness"
)

// recorder is an Observer that remembers everything.
type recorder struct {
	mu       sync.Mutex
	done     []uint16
	failed   []Failure
	loads    []bool
	notAfter time.Time
	changed  chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

// notify wakes a waiter in nextFailure without ever blocking.
func (r *recorder) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) HandshakeDone(v uint16, _ time.Duration) {
	r.mu.Lock()
	r.done = append(r.done, v)
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) HandshakeFailed(f Failure, _ time.Duration) {
	r.mu.Lock()
	r.failed = append(r.failed, f)
	r.mu.Unlock()
	r.notify()
}

func (r *recorder) CertificateLoaded(ok bool, notAfter time.Time) {
	r.mu.Lock()
	r.loads = append(r.loads, ok)
	if ok {
		r.notAfter = notAfter
	}
	r.mu.Unlock()
}

// nextFailure waits for the next failure reported.
func (r *recorder) nextFailure(t *testing.T, seen int) Failure {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		if len(r.failed) > seen {
			f := r.failed[seen]
			r.mu.Unlock()
			return f
		}
		r.mu.Unlock()
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatal("no handshake failure reported")
		}
	}
}

// writePair writes ca's server certificate chain and key as PEM files.
func writePair(t testing.TB, dir string, ca *harness.TestCA) (certFile, keyFile string) {
	t.Helper()
	var chain bytes.Buffer
	for _, der := range ca.ServerCert.Certificate {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	key, err := x509.MarshalPKCS8PrivateKey(ca.ServerCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, chain.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// front is a running Server on loopback with what it handed off.
type front struct {
	s     *Server
	addr  string
	ca    *harness.TestCA
	obs   *recorder
	conns chan Conn
}

func startFront(t *testing.T, mod func(*Config)) *front {
	t.Helper()
	f := &front{ca: harness.NewTestCA(t), obs: newRecorder(), conns: make(chan Conn, 64)}
	cfg := Config{
		HandshakeTimeout: 20 * time.Second,
		Observer:         f.obs,
		Handoff:          func(c Conn) { f.conns <- c },
	}
	cfg.CertFile, cfg.KeyFile = writePair(t, t.TempDir(), f.ca)
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.s, f.addr = s, ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for len(f.conns) > 0 {
			_ = (<-f.conns).Plain.Close()
		}
	})
	return f
}

func (f *front) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
}

// handoff waits for the next connection handed to the engine.
func (f *front) handoff(t *testing.T) Conn {
	t.Helper()
	select {
	case c := <-f.conns:
		_ = c.Plain.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("no connection handed off")
		return Conn{}
	}
}

// exchange sends a request from the client and an answer from the engine
// side, and checks both arrive.
func exchange(t *testing.T, client net.Conn, plain net.Conn) {
	t.Helper()
	req := []byte("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(req))
	if _, err := io.ReadFull(plain, got); err != nil || !bytes.Equal(got, req) {
		t.Fatalf("engine side read %q, %v", got, err)
	}
	resp := []byte("HTTP/1.1 204 No Content\r\n\r\n")
	if _, err := plain.Write(resp); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len(resp))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, resp) {
		t.Fatalf("client read %q, %v", got, err)
	}
}

func TestHandshakeAndRelay(t *testing.T) {
	f := startFront(t, nil)
	for _, c := range []struct {
		name string
		max  uint16
		want uint16
	}{
		{"TLS 1.3", 0, tls.VersionTLS13},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := f.clientConfig()
			cfg.MaxVersion = c.max
			client, err := tls.Dial("tcp", f.addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			_ = client.SetDeadline(time.Now().Add(20 * time.Second))
			if p := client.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
				t.Errorf("ALPN %q, want http/1.1", p)
			}
			hc := f.handoff(t)
			defer hc.Plain.Close()
			local := addrPort(client.LocalAddr())
			if hc.Version != c.want || hc.Client != local || hc.Peer != local {
				t.Errorf("handed off version %x client %v peer %v; want %x and %v", hc.Version, hc.Client, hc.Peer, c.want, local)
			}
			exchange(t, client, hc.Plain)
		})
	}
	f.obs.mu.Lock()
	defer f.obs.mu.Unlock()
	if len(f.obs.done) != 2 || len(f.obs.failed) != 0 {
		t.Errorf("observer: done %v failed %v", f.obs.done, f.obs.failed)
	}
}

// rawClient dials the front and runs fn on the TCP connection.
func rawClient(t *testing.T, addr string, fn func(c net.Conn)) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fn(c)
}

// tlsOver runs a client handshake over c, ignoring its error (the server's
// verdict is what the tests check).
func tlsOver(c net.Conn, cfg *tls.Config) *tls.Conn {
	tc := tls.Client(c, cfg)
	_ = tc.Handshake()
	return tc
}

func TestHandshakeFailures(t *testing.T) {
	f := startFront(t, func(c *Config) {
		c.Admit = func(client netip.AddrPort) bool { return client.Addr() != netip.MustParseAddr("127.0.0.2") }
	})
	untrusting := &tls.Config{ServerName: "localhost", RootCAs: x509.NewCertPool()}
	tests := []struct {
		name   string
		client func(c net.Conn)
		want   Failure
	}{
		{"plain HTTP", func(c net.Conn) {
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
			_, _ = io.ReadAll(c)
		}, FailNotTLS},
		{"PROXY header from an untrusted peer", func(c net.Conn) {
			_, _ = c.Write([]byte("PROXY TCP4 203.0.113.7 192.0.2.1 40000 8443\r\n"))
			tlsOver(c, f.clientConfig())
		}, FailNotTLS},
		{"closed at once", func(c net.Conn) {}, FailEOF},
		{"TLS 1.1 only", func(c net.Conn) {
			tlsOver(c, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true})
		}, FailVersion},
		{"ALPN h2 only", func(c net.Conn) {
			cfg := f.clientConfig()
			cfg.NextProtos = []string{"h2"}
			tlsOver(c, cfg)
		}, FailNegotiation},
		{"client does not trust the certificate", func(c net.Conn) { tlsOver(c, untrusting) }, FailClientRejected},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rawClient(t, f.addr, tt.client)
			if got := f.obs.nextFailure(t, i); got != tt.want {
				t.Errorf("failure %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("refused by Admit", func(t *testing.T) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		c, err := d.Dial("tcp", f.addr)
		if err != nil {
			t.Skipf("cannot bind 127.0.0.2: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		tc := tlsOver(c, f.clientConfig())
		if tc.ConnectionState().HandshakeComplete {
			t.Error("handshake completed for a refused client")
		}
		if got := f.obs.nextFailure(t, len(tests)); got != FailRefused {
			t.Errorf("failure %v, want refused", got)
		}
	})
}

// TestStalledHandshakesDoNotDisturb holds connections that never send a
// byte and one that sends garbage slowly, and checks that a client arriving
// after them completes its handshake and exchange while they are still
// pending, and that the stalled ones are closed at the deadline.
func TestStalledHandshakesDoNotDisturb(t *testing.T) {
	const timeout = 3 * time.Second
	f := startFront(t, func(c *Config) { c.HandshakeTimeout = timeout; c.MaxHandshakes = 64 })
	var stalled []net.Conn
	for range 40 {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		stalled = append(stalled, c)
	}
	_, _ = stalled[0].Write([]byte{0x16, 0x03, 0x01}) // a record header, then nothing

	client, err := tls.Dial("tcp", f.addr, f.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_ = client.SetDeadline(time.Now().Add(20 * time.Second))
	hc := f.handoff(t)
	defer hc.Plain.Close()
	exchange(t, client, hc.Plain)
	f.obs.mu.Lock()
	early := len(f.obs.failed)
	f.obs.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d stalled connections ended before the good client was served; the test cannot tell whether they delayed it", early)
	}

	for i, c := range stalled {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("stalled connection %d got bytes", i)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("stalled connection %d still open long after the handshake timeout", i)
		}
	}
	for i := range stalled {
		if got := f.obs.nextFailure(t, i); got != FailTimeout {
			t.Errorf("stalled connection: failure %v, want timeout", got)
		}
	}
}

func TestProxyProtocol(t *testing.T) {
	peers, err := httpparse.ParseProxyPeers([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	f := startFront(t, func(c *Config) { c.ProxyPeers = peers })
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 40000}
	src6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 40001}
	dst := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8443}
	dst6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 8443}
	header := func(v byte, s, d net.Addr) []byte {
		b, err := proxyproto.HeaderProxyFromAddrs(v, s, d).Format()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	local, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).Format()
	if err != nil {
		t.Fatal(err)
	}
	v1 := header(1, src, dst)

	ok := []struct {
		name   string
		send   func(c net.Conn)
		client string // "" for the TCP peer
	}{
		{"v1", func(c net.Conn) { _, _ = c.Write(v1) }, "203.0.113.7:40000"},
		{"v2 IPv6", func(c net.Conn) { _, _ = c.Write(header(2, src6, dst6)) }, "[2001:db8::7]:40001"},
		{"v2 LOCAL keeps the peer", func(c net.Conn) { _, _ = c.Write(local) }, ""},
		{"v1 in two pieces", func(c net.Conn) {
			_, _ = c.Write(v1[:9])
			time.Sleep(50 * time.Millisecond) // let the first piece be peeked alone
			_, _ = c.Write(v1[9:])
		}, "203.0.113.7:40000"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			rawClient(t, f.addr, func(c net.Conn) {
				tt.send(c)
				tc := tls.Client(c, f.clientConfig())
				if err := tc.Handshake(); err != nil {
					t.Fatalf("handshake after the PROXY header: %v", err)
				}
				hc := f.handoff(t)
				defer hc.Plain.Close()
				peer := addrPort(c.LocalAddr())
				want := peer
				if tt.client != "" {
					want = netip.MustParseAddrPort(tt.client)
				}
				if hc.Client != want || hc.Peer != peer {
					t.Errorf("client %v peer %v, want %v %v", hc.Client, hc.Peer, want, peer)
				}
				exchange(t, tc, hc.Plain)
			})
		})
	}

	bad := []struct {
		name string
		send []byte
	}{
		{"no header, straight TLS", nil},
		{"malformed v1", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 99999 8443\r\n")},
		{"v1 too long", append([]byte("PROXY UNKNOWN "), bytes.Repeat([]byte("f"), 200)...)},
	}
	for i, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			rawClient(t, f.addr, func(c net.Conn) {
				if tt.send != nil {
					_, _ = c.Write(tt.send)
				}
				tc := tlsOver(c, f.clientConfig())
				if tc.ConnectionState().HandshakeComplete {
					t.Error("handshake completed without a valid PROXY header")
				}
			})
			if got := f.obs.nextFailure(t, i); got != FailProxyHeader {
				t.Errorf("failure %v, want proxy_header", got)
			}
		})
	}
}

// TestReload checks that a reloaded pair serves new handshakes while an
// established connection keeps working, and that a broken pair keeps the
// previous one.
func TestReload(t *testing.T) {
	f := startFront(t, nil)
	certFile, keyFile := f.s.cfg.CertFile, f.s.cfg.KeyFile

	// handshake connects, waits for the handoff, and returns both ends and
	// the leaf certificate the client was shown.
	handshake := func(cfg *tls.Config) (*tls.Conn, Conn, []byte) {
		client, err := tls.Dial("tcp", f.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Close() })
		_ = client.SetDeadline(time.Now().Add(20 * time.Second))
		hc := f.handoff(t)
		t.Cleanup(func() { _ = hc.Plain.Close() })
		return client, hc, client.ConnectionState().PeerCertificates[0].Raw
	}
	old, oldConn, leaf := handshake(f.clientConfig())
	if !bytes.Equal(leaf, f.ca.ServerCert.Certificate[0]) {
		t.Fatal("first handshake did not use the first pair")
	}

	next := harness.NewTestCA(t)
	dir := t.TempDir()
	c2, k2 := writePair(t, dir, next)
	for _, p := range [][2]string{{c2, certFile}, {k2, keyFile}} {
		b, _ := os.ReadFile(p[0])
		if err := os.WriteFile(p[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	cfg := f.clientConfig()
	cfg.RootCAs = next.Pool
	if _, _, leaf := handshake(cfg); !bytes.Equal(leaf, next.ServerCert.Certificate[0]) {
		t.Fatal("handshake after Reload did not use the new pair")
	}
	exchange(t, old, oldConn.Plain) // established before the reload: still fine

	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Reload(); !errors.Is(err, ErrCertificate) {
		t.Fatalf("Reload of a broken pair: %v, want ErrCertificate", err)
	}
	if _, _, leaf := handshake(cfg); !bytes.Equal(leaf, next.ServerCert.Certificate[0]) {
		t.Fatal("a failed Reload replaced the pair in use")
	}
	f.obs.mu.Lock()
	defer f.obs.mu.Unlock()
	if want := []bool{true, true, false}; len(f.obs.loads) != 3 || f.obs.loads[0] != want[0] || f.obs.loads[1] != want[1] || f.obs.loads[2] != want[2] {
		t.Errorf("loads observed %v, want %v", f.obs.loads, want)
	}
	if f.obs.notAfter.IsZero() {
		t.Error("no certificate expiry observed")
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(Config{CertFile: filepath.Join(dir, "none.crt"), KeyFile: filepath.Join(dir, "none.key"), Handoff: func(Conn) {}}); !errors.Is(err, ErrCertificate) {
		t.Errorf("missing files: %v, want ErrCertificate", err)
	}
	if _, err := New(Config{}); !errors.Is(err, ErrNoHandoff) {
		t.Errorf("no Handoff: %v, want ErrNoHandoff", err)
	}
}

// TestCloseAbortsHandshakes checks that Close does not wait for a stalled
// client's deadline, and that Serve after Close refuses.
func TestCloseAbortsHandshakes(t *testing.T) {
	f := startFront(t, func(c *Config) { c.HandshakeTimeout = time.Hour })
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for len(f.s.sem) == 0 { // until the stalled connection was accepted
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- f.s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for a stalled handshake")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := f.s.Serve(ln); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
}

// TestNegotiationFailures pins the crypto/tls message classify matches for
// no common cipher suite (ALPN is pinned by TestHandshakeFailures).
func TestNegotiationFailures(t *testing.T) {
	f := startFront(t, nil)
	for i, cfg := range []*tls.Config{
		{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, InsecureSkipVerify: true},
	} {
		rawClient(t, f.addr, func(c net.Conn) { tlsOver(c, cfg) })
		if got := f.obs.nextFailure(t, i); got != FailNegotiation {
			t.Errorf("client %d: failure %v, want negotiation", i, got)
		}
	}
}

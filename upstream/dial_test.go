package upstream_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/upstream"
)

// fakeDNS is a loopback UDP DNS server with fixed answers, so that name
// resolution is tested without leaving the machine. Unknown names get
// NXDOMAIN; names in silent get no answer at all.
type fakeDNS struct {
	pc      net.PacketConn
	records map[string][]netip.Addr // lower-case FQDN with the trailing dot
	silent  map[string]bool
}

func startDNS(t testing.TB, records map[string][]netip.Addr, silent ...string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{pc: pc, records: records, silent: map[string]bool{}}
	for _, s := range silent {
		d.silent[s] = true
	}
	done := make(chan struct{})
	go func() { defer close(done); d.serve() }()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	addr := pc.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "udp", addr)
		},
	}
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			_, _ = d.pc.WriteTo(resp, from)
		}
	}
}

// answer builds the response to query q (RFC 1035 §4.1), or nil to stay silent.
func (d *fakeDNS) answer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	var name strings.Builder
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		name.Write(q[i+1 : i+1+l])
		name.WriteByte('.')
		i += 1 + l
	}
	i++ // root label
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	qend := i + 4
	fqdn := strings.ToLower(name.String())
	if d.silent[fqdn] {
		return nil
	}
	addrs, known := d.records[fqdn]
	var answers [][]byte
	for _, a := range addrs {
		if (qtype == 1 && a.Is4()) || (qtype == 28 && a.Is6()) {
			answers = append(answers, a.AsSlice())
		}
	}
	resp := make([]byte, 0, 512)
	resp = append(resp, q[0], q[1])
	flags := uint16(0x8000|0x0080) | binary.BigEndian.Uint16(q[2:])&0x0100
	if !known {
		flags |= 3 // NXDOMAIN
	}
	resp = binary.BigEndian.AppendUint16(resp, flags)
	resp = binary.BigEndian.AppendUint16(resp, 1)
	resp = binary.BigEndian.AppendUint16(resp, uint16(len(answers)))
	resp = append(resp, 0, 0, 0, 0)
	resp = append(resp, q[12:qend]...)
	for _, rd := range answers {
		resp = append(resp, 0xc0, 12)
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = append(resp, 0, 1, 0, 0, 0, 60)
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rd)))
		resp = append(resp, rd...)
	}
	return resp
}

func mustAddrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// target splits a listener address into an upstream.Target.
func target(t testing.TB, hostPort string) upstream.Target {
	t.Helper()
	ap := netip.MustParseAddrPort(hostPort)
	return upstream.Target{Host: ap.Addr().String(), Port: ap.Port()}
}

func portOf(t testing.TB, hostPort string) uint16 { return target(t, hostPort).Port }

func TestResolve(t *testing.T) {
	r := startDNS(t, map[string][]netip.Addr{
		"dual.test.": mustAddrs("192.0.2.1", "2001:db8::1"),
	})
	d := &upstream.Dialer{Resolver: r, Timeout: 5 * time.Second}
	tests := []struct {
		host string
		want []netip.Addr
		typ  proxystatus.Type
	}{
		{"127.0.0.1", mustAddrs("127.0.0.1"), 0},
		{"::1", mustAddrs("::1"), 0},
		{"::ffff:10.1.2.3", mustAddrs("10.1.2.3"), 0},
		{"dual.test", mustAddrs("192.0.2.1", "2001:db8::1"), 0},
		{"DUAL.test", mustAddrs("192.0.2.1", "2001:db8::1"), 0},
		{"nothing.invalid", nil, proxystatus.DNSError},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, err := d.Resolve(context.Background(), tt.host)
			if tt.typ != 0 {
				wantPSType(t, err, tt.typ, "")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The resolver may order A and AAAA answers either way.
			if len(got) != len(tt.want) {
				t.Fatalf("Resolve = %v, want %v", got, tt.want)
			}
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					found = found || g == w
				}
				if !found {
					t.Fatalf("Resolve = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// countingListener accepts and counts connections, echoing nothing.
func countingListener(t *testing.T) (addr string, accepted func() int64) {
	t.Helper()
	ln := listen(t)
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	}()
	return ln.Addr().String(), func() int64 { _ = ln.Close(); wg.Wait(); return n.Load() }
}

func TestDialRefusals(t *testing.T) {
	addr, accepted := countingListener(t)
	port := portOf(t, addr)
	r := startDNS(t, map[string][]netip.Addr{
		"metadata.test.": mustAddrs("169.254.169.254"),
		"loopback.test.": mustAddrs("127.0.0.1"),
		"empty.test.":    nil,
	}, "silent.test.")
	sentinel := &proxystatus.Error{Type: proxystatus.DestinationIPProhibited, Detail: "denied by test rule"}
	var checked []string
	var mu sync.Mutex
	tests := []struct {
		name   string
		d      upstream.Dialer
		t      upstream.Target
		typ    proxystatus.Type
		detail string
		same   error // the very error value expected, when set
	}{
		{"metadata IPv4", upstream.Dialer{}, upstream.Target{Host: "169.254.169.254", Port: 80}, proxystatus.DestinationIPProhibited, "link-local", nil},
		{"link-local IPv4", upstream.Dialer{}, upstream.Target{Host: "169.254.10.10", Port: 3128}, proxystatus.DestinationIPProhibited, "link-local", nil},
		{"link-local IPv6", upstream.Dialer{}, upstream.Target{Host: "fe80::1", Port: 3128}, proxystatus.DestinationIPProhibited, "link-local", nil},
		{"metadata Alibaba", upstream.Dialer{}, upstream.Target{Host: "100.100.100.200", Port: 80}, proxystatus.DestinationIPProhibited, "", nil},
		{"metadata AWS IPv6", upstream.Dialer{}, upstream.Target{Host: "fd00:ec2::254", Port: 80}, proxystatus.DestinationIPProhibited, "", nil},
		{"metadata 4-in-6", upstream.Dialer{}, upstream.Target{Host: "::ffff:169.254.169.254", Port: 80}, proxystatus.DestinationIPProhibited, "", nil},
		{"metadata by name", upstream.Dialer{Resolver: r}, upstream.Target{Host: "metadata.test", Port: 80}, proxystatus.DestinationIPProhibited, "", nil},
		{
			"AllowLinkLocal reaches the rules",
			upstream.Dialer{AllowLinkLocal: true, Check: func(host string, a netip.Addr) error {
				mu.Lock()
				checked = append(checked, host+"="+a.String())
				mu.Unlock()
				return sentinel
			}},
			upstream.Target{Host: "169.254.169.254", Port: 80}, proxystatus.DestinationIPProhibited, "", sentinel,
		},
		{"IsSelf is a loop", upstream.Dialer{IsSelf: func(ap netip.AddrPort) bool { return ap == netip.MustParseAddrPort(addr) }},
			target(t, addr), proxystatus.ProxyLoopDetected, "", nil},
		{"IsSelf by name", upstream.Dialer{Resolver: r, IsSelf: func(ap netip.AddrPort) bool { return ap == netip.MustParseAddrPort(addr) }},
			upstream.Target{Host: "loopback.test", Port: port}, proxystatus.ProxyLoopDetected, "", nil},
		{"Check *Error passes through", upstream.Dialer{Check: func(string, netip.Addr) error { return sentinel }},
			target(t, addr), proxystatus.DestinationIPProhibited, "denied by test rule", sentinel},
		{"Check wrapped *Error passes through", upstream.Dialer{Check: func(string, netip.Addr) error { return errors.Join(errors.New("x"), sentinel) }},
			target(t, addr), proxystatus.DestinationIPProhibited, "denied by test rule", sentinel},
		{"Check plain error", upstream.Dialer{Check: func(string, netip.Addr) error { return errors.New("no") }},
			target(t, addr), proxystatus.DestinationIPProhibited, "by rule", nil},
		{"refused port", upstream.Dialer{}, target(t, closedPort(t)), proxystatus.ConnectionRefused, "", nil},
		{"refused port by name", upstream.Dialer{Resolver: r}, upstream.Target{Host: "loopback.test", Port: portOf(t, closedPort(t))}, proxystatus.ConnectionRefused, "", nil},
		{".invalid name", upstream.Dialer{Resolver: r}, upstream.Target{Host: "proxy.invalid", Port: 3128}, proxystatus.DNSError, "does not resolve", nil},
		{"name without addresses", upstream.Dialer{Resolver: r}, upstream.Target{Host: "empty.test", Port: 3128}, proxystatus.DNSError, "", nil},
		{"DNS never answers", upstream.Dialer{Resolver: r, Timeout: 300 * time.Millisecond}, upstream.Target{Host: "silent.test", Port: 3128}, proxystatus.DNSError, "timed out", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.d
			if d.Timeout == 0 {
				d.Timeout = 10 * time.Second
			}
			c, err := d.Dial(context.Background(), tt.t)
			if err == nil {
				_ = c.Close()
				t.Fatal("Dial succeeded")
			}
			if c != nil {
				t.Errorf("non-nil conn with error")
			}
			wantPSType(t, err, tt.typ, tt.detail)
			if tt.same != nil && err != tt.same {
				t.Errorf("error %p %v, want the Check's own %p", err, err, tt.same)
			}
		})
	}
	if n := accepted(); n != 0 {
		t.Errorf("refused dials still connected %d times", n)
	}
	if len(checked) != 1 || checked[0] != "169.254.169.254=169.254.169.254" {
		t.Errorf("Check saw %q", checked)
	}
}

func TestDialPlain(t *testing.T) {
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	port := portOf(t, ln.Addr().String())
	r := startDNS(t, map[string][]netip.Addr{
		// The first address is refused by the built-in rule, the second works.
		"multi.test.": mustAddrs("169.254.169.254", "127.0.0.1"),
	})
	var seenHost string
	var seenAddr netip.Addr
	d := &upstream.Dialer{Resolver: r, Timeout: 10 * time.Second, Check: func(h string, a netip.Addr) error {
		seenHost, seenAddr = h, a
		return nil
	}}
	for _, tg := range []upstream.Target{
		{Host: "127.0.0.1", Port: port},
		{Host: "::ffff:127.0.0.1", Port: port},
		{Host: "multi.test", Port: port},
	} {
		t.Run(tg.Host, func(t *testing.T) {
			c, err := d.Dial(context.Background(), tg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, ok := c.(*net.TCPConn); !ok {
				t.Errorf("plain dial returned %T, want *net.TCPConn", c)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
				t.Fatalf("echo %q, %v", b, err)
			}
			if seenHost != tg.Host || seenAddr != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("Check saw %q %v", seenHost, seenAddr)
			}
		})
	}
}

// tlsServer is a loopback TLS server with a fresh self-signed certificate
// for 127.0.0.1 and proxy.test. Each connection runs handle.
type tlsServer struct {
	addr  string
	roots *x509.CertPool
	errs  chan error
}

func startTLS(t *testing.T, handle func(c *tls.Conn) error) *tlsServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "proxyto test upstream"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"proxy.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{addr: ln.Addr().String(), roots: roots, errs: make(chan error, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
				err := handle(tc)
				_ = tc.Close()
				s.errs <- err
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return s
}

// serverResult waits for the handler of one connection.
func (s *tlsServer) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errs:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("TLS server handler did not finish")
		return nil
	}
}

func dialTLS(t *testing.T, s *tlsServer) *net.UnixConn {
	t.Helper()
	tg := target(t, s.addr)
	tg.TLS = true
	d := &upstream.Dialer{Timeout: 10 * time.Second, TLS: &tls.Config{RootCAs: s.roots}}
	c, err := d.Dial(context.Background(), tg)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		_ = c.Close()
		t.Fatalf("TLS dial returned %T, want *net.UnixConn (bridge)", c)
	}
	t.Cleanup(func() { _ = uc.Close() })
	_ = uc.SetDeadline(time.Now().Add(20 * time.Second))
	return uc
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDialTLSBridgeEcho(t *testing.T) {
	s := startTLS(t, func(c *tls.Conn) error {
		if _, err := io.Copy(c, c); err != nil {
			return err
		}
		return c.CloseWrite() // echoed everything; client sent FIN
	})
	c := dialTLS(t, s)
	payload := randomBytes(t, 4<<20)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		t.Fatalf("reading echo: %v after %d bytes", err, n)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if want := sha256.Sum256(payload); n != int64(len(payload)) || [32]byte(h.Sum(nil)) != want {
		t.Fatalf("echo of %d bytes came back as %d bytes with a different sha256", len(payload), n)
	}
	if err := s.result(t); err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestDialTLSBridgeClientHalfClose(t *testing.T) {
	reply := randomBytes(t, 1<<20)
	got := make(chan []byte, 1)
	s := startTLS(t, func(c *tls.Conn) error {
		req, err := io.ReadAll(c) // until the client's close_notify
		got <- req
		if err != nil {
			return err
		}
		_, err = c.Write(reply) // still allowed to send
		return err
	})
	c := dialTLS(t, s)
	if _, err := c.Write([]byte("request, then FIN")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading reply after CloseWrite: %v (%d bytes)", err, len(b))
	}
	if sha256.Sum256(b) != sha256.Sum256(reply) {
		t.Fatalf("reply %d bytes, want %d identical bytes", len(b), len(reply))
	}
	if req := <-got; string(req) != "request, then FIN" {
		t.Fatalf("server read %q", req)
	}
	if err := s.result(t); err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestDialTLSBridgeServerHalfClose(t *testing.T) {
	upload := randomBytes(t, 1<<20)
	got := make(chan []byte, 1)
	s := startTLS(t, func(c *tls.Conn) error {
		if _, err := c.Write([]byte("banner, then FIN")); err != nil {
			return err
		}
		if err := c.CloseWrite(); err != nil {
			return err
		}
		b, err := io.ReadAll(c) // still receives
		got <- b
		return err
	})
	c := dialTLS(t, s)
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "banner, then FIN" {
		t.Fatalf("read %q, %v; want the banner then EOF", b, err)
	}
	if _, err := c.Write(upload); err != nil {
		t.Fatalf("writing after the server's FIN: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := s.result(t); err != nil {
		t.Fatalf("server: %v", err)
	}
	if b := <-got; sha256.Sum256(b) != sha256.Sum256(upload) {
		t.Fatalf("server received %d bytes, want %d identical bytes", len(b), len(upload))
	}
}

func TestDialTLSFailures(t *testing.T) {
	good := startTLS(t, func(c *tls.Conn) error { return c.Handshake() })
	r := startDNS(t, map[string][]netip.Addr{
		"proxy.test.": mustAddrs("127.0.0.1"),
		"other.test.": mustAddrs("127.0.0.1"),
	})
	// A plain HTTP server where the TLS upstream should be.
	httpLn := listen(t)
	go acceptLoop(httpLn, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 1024))
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
	})
	// A server that closes as soon as the ClientHello arrives.
	closeLn := listen(t)
	go acceptLoop(closeLn, func(c net.Conn) { _, _ = c.Read(make([]byte, 1024)) })
	// A server that reads and never answers.
	mute := listen(t)
	go acceptLoop(mute, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })

	port := portOf(t, good.addr)
	tests := []struct {
		name string
		d    upstream.Dialer
		t    upstream.Target
		typ  proxystatus.Type
	}{
		{"verified by name", upstream.Dialer{Resolver: r, TLS: &tls.Config{RootCAs: good.roots}}, upstream.Target{Host: "proxy.test", Port: port, TLS: true}, 0},
		{"unknown CA (system roots)", upstream.Dialer{}, upstream.Target{Host: "127.0.0.1", Port: port, TLS: true}, proxystatus.TLSCertificateError},
		{"unknown CA (empty pool)", upstream.Dialer{TLS: &tls.Config{RootCAs: x509.NewCertPool()}}, upstream.Target{Host: "127.0.0.1", Port: port, TLS: true}, proxystatus.TLSCertificateError},
		{"wrong host name", upstream.Dialer{Resolver: r, TLS: &tls.Config{RootCAs: good.roots}}, upstream.Target{Host: "other.test", Port: port, TLS: true}, proxystatus.TLSCertificateError},
		{"ServerName override", upstream.Dialer{Resolver: r, TLS: &tls.Config{RootCAs: good.roots, ServerName: "proxy.test"}}, upstream.Target{Host: "other.test", Port: port, TLS: true}, 0},
		{"insecure skip verify", upstream.Dialer{TLS: &tls.Config{InsecureSkipVerify: true}}, upstream.Target{Host: "127.0.0.1", Port: port, TLS: true}, 0},
		{"HTTP server", upstream.Dialer{}, upstream.Target{Host: "127.0.0.1", Port: portOf(t, httpLn.Addr().String()), TLS: true}, proxystatus.TLSProtocolError},
		{"server closes", upstream.Dialer{}, upstream.Target{Host: "127.0.0.1", Port: portOf(t, closeLn.Addr().String()), TLS: true}, proxystatus.TLSProtocolError},
		{"server never answers", upstream.Dialer{Timeout: 300 * time.Millisecond}, upstream.Target{Host: "127.0.0.1", Port: portOf(t, mute.Addr().String()), TLS: true}, proxystatus.ConnectionTimeout},
		{"refused", upstream.Dialer{}, upstream.Target{Host: "127.0.0.1", Port: portOf(t, closedPort(t)), TLS: true}, proxystatus.ConnectionRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.d
			if d.Timeout == 0 {
				d.Timeout = 10 * time.Second
			}
			dialWant(t, &d, tt.t, tt.typ)
		})
	}
}

// dialWant dials target with d: it must connect when typ is 0, and fail
// with a Proxy-Status error of type typ otherwise.
func dialWant(t *testing.T, d *upstream.Dialer, target upstream.Target, typ proxystatus.Type) {
	t.Helper()
	c, err := d.Dial(context.Background(), target)
	if typ == 0 {
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		_ = c.Close()
		return
	}
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial succeeded")
	}
	wantPSType(t, err, typ, "")
}

func acceptLoop(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			handle(c)
			_ = c.Close()
		}()
	}
}

// TestDialLookup: with a Lookup hook (the engine's name cache), names go to
// it and nowhere else; IP literals, names under "invalid" and targets that
// carry their addresses never reach it; the rules apply to what it returns.
func TestDialLookup(t *testing.T) {
	addr, accepted := countingListener(t)
	port := portOf(t, addr)
	var mu sync.Mutex
	var asked []string
	errNo := proxystatus.New(proxystatus.DNSError, "upstream name does not resolve")
	d := &upstream.Dialer{Timeout: 5 * time.Second, Lookup: func(_ context.Context, host string) ([]netip.Addr, error) {
		mu.Lock()
		asked = append(asked, host)
		mu.Unlock()
		switch host {
		case "up.test":
			return mustAddrs("127.0.0.1"), nil
		case "metadata.test":
			return mustAddrs("169.254.169.254"), nil
		case "empty.test":
			return nil, nil
		}
		return nil, errNo
	}}
	tests := []struct {
		name string
		t    upstream.Target
		typ  proxystatus.Type // 0: connects
	}{
		{"name through the hook", upstream.Target{Host: "up.test", Port: port}, 0},
		{"IP literal", upstream.Target{Host: "127.0.0.1", Port: port}, 0},
		{"resolved already", upstream.Target{Host: "not-asked.test", Port: port, Addrs: mustAddrs("127.0.0.1")}, 0},
		{"rules apply to resolved addresses", upstream.Target{Host: "not-asked.test", Port: port, Addrs: mustAddrs("169.254.169.254")}, proxystatus.DestinationIPProhibited},
		{"rules apply to the hook's answer", upstream.Target{Host: "metadata.test", Port: 80}, proxystatus.DestinationIPProhibited},
		{"hook's error", upstream.Target{Host: "nx.test", Port: port}, proxystatus.DNSError},
		{"hook without addresses", upstream.Target{Host: "empty.test", Port: port}, proxystatus.DNSError},
		{".invalid", upstream.Target{Host: "up.invalid", Port: port}, proxystatus.DNSError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { dialWant(t, d, tt.t, tt.typ) })
	}
	if _, err := d.Resolve(context.Background(), "up.test"); err != nil {
		t.Errorf("Resolve through the hook: %v", err)
	}
	if n := accepted(); n != 3 {
		t.Errorf("%d connections accepted, want 3", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := strings.Join(asked, ","), "up.test,metadata.test,nx.test,empty.test,up.test"; got != want {
		t.Errorf("the hook was asked for %s, want %s", got, want)
	}
}

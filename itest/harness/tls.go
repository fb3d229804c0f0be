package harness

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// TestCA is a throw-away certificate authority for https upstreams and
// proxyto's TLS listener: its certificate as a PEM file (for --upstream-ca,
// curl's --proxy-cacert) and a server certificate it issued for
// "localhost", 127.0.0.1 and ::1; IssuePair issues more, as files.
type TestCA struct {
	// CAFile is the PEM file of the CA certificate.
	CAFile string
	// Pool trusts the CA.
	Pool *x509.CertPool
	// ServerCert is the server certificate (with its key) issued by the CA.
	ServerCert tls.Certificate

	key    *ecdsa.PrivateKey
	cert   *x509.Certificate
	serial atomic.Int64
}

// NewTestCA makes a CA and a server certificate valid for an hour.
func NewTestCA(t TB) *TestCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("harness: CA key: %v", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "proxyto itest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("harness: CA certificate: %v", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("harness: CA certificate: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("harness: server key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("harness: server certificate: %v", err)
	}
	file := filepath.Join(t.TempDir(), "test-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatalf("harness: writing CA file: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	ca := &TestCA{
		CAFile:     file,
		Pool:       pool,
		ServerCert: tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key},
		key:        caKey,
		cert:       caCert,
	}
	ca.serial.Store(2)
	return ca
}

// IssuePair issues a new server certificate for "localhost", 127.0.0.1 and
// ::1 (valid for an hour, a serial number of its own) and writes it, with
// the CA certificate after it, and its key as PEM files in dir (cert.pem,
// key.pem: a second call with the same dir replaces them). It returns the
// files and the serial number, which tells a handshake's certificate apart.
func (ca *TestCA) IssuePair(t TB, dir string) (certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("harness: server key: %v", err)
	}
	serial = ca.serial.Add(1)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("harness: server certificate: %v", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("harness: server key: %v", err)
	}
	certPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Written aside and renamed: a reload never sees half a file.
	for _, f := range []struct {
		name string
		data []byte
	}{{certFile, certPEM}, {keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}} {
		if err := os.WriteFile(f.name+".new", f.data, 0o600); err != nil {
			t.Fatalf("harness: writing %s: %v", f.name, err)
		}
		if err := os.Rename(f.name+".new", f.name); err != nil {
			t.Fatalf("harness: renaming %s: %v", f.name, err)
		}
	}
	return certFile, keyFile, serial
}

// DialTLS connects to addr with TLS, trusting ca, and returns a Client over
// the TLS session (with a DefaultDeadline; closed in t.Cleanup) and the
// session's state.
func DialTLS(t TB, addr string, ca *TestCA) (*Client, tls.ConnectionState) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("harness: dial %s: %v", addr, err)
	}
	return ClientTLS(t, raw, ca)
}

// ClientTLS runs a TLS handshake (trusting ca, ALPN http/1.1) on raw, an
// established connection on which a test may have sent bytes already (a
// PROXY header), and returns a Client over the session, as DialTLS does.
func ClientTLS(t TB, raw net.Conn, ca *TestCA) (*Client, tls.ConnectionState) {
	t.Helper()
	raw.SetDeadline(time.Now().Add(DefaultDeadline))
	t.Cleanup(func() { raw.Close() })
	tc := tls.Client(raw, &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("harness: TLS handshake with %s: %v", raw.RemoteAddr(), err)
	}
	return &Client{Conn: raw.(*net.TCPConn), TLS: tc, R: bufio.NewReaderSize(tc, 64<<10), t: t}, tc.ConnectionState()
}

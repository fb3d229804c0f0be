package upstream_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/upstream"
)

func TestClassify(t *testing.T) {
	opErr := func(op string, err error) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, err)}
	}
	timeoutOp := &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}
	tests := []struct {
		name string
		err  error
		want proxystatus.Type
	}{
		{"ECONNREFUSED bare", syscall.ECONNREFUSED, proxystatus.ConnectionRefused},
		{"ECONNREFUSED dial OpError", opErr("connect", syscall.ECONNREFUSED), proxystatus.ConnectionRefused},
		{"ECONNRESET read", opErr("read", syscall.ECONNRESET), proxystatus.ConnectionTerminated},
		{"EPIPE write", opErr("write", syscall.EPIPE), proxystatus.ConnectionTerminated},
		{"io.EOF", io.EOF, proxystatus.ConnectionTerminated},
		{"wrapped io.EOF", fmt.Errorf("reading CONNECT answer: %w", io.EOF), proxystatus.ConnectionTerminated},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF, proxystatus.ConnectionTerminated},
		{"EHOSTUNREACH", opErr("connect", syscall.EHOSTUNREACH), proxystatus.ConnectionRefused},
		{"ENETUNREACH", opErr("connect", syscall.ENETUNREACH), proxystatus.ConnectionRefused},
		{"os.ErrDeadlineExceeded", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, proxystatus.ConnectionTimeout},
		{"context.DeadlineExceeded", context.DeadlineExceeded, proxystatus.ConnectionTimeout},
		{"net.Error timeout", timeoutOp, proxystatus.ConnectionTimeout},
		{"x509 unknown authority", x509.UnknownAuthorityError{}, proxystatus.TLSCertificateError},
		{"x509 hostname", x509.HostnameError{Host: "a.example"}, proxystatus.TLSCertificateError},
		{"x509 invalid", x509.CertificateInvalidError{Reason: x509.Expired}, proxystatus.TLSCertificateError},
		{"tls CertificateVerificationError", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, proxystatus.TLSCertificateError},
		{"wrapped x509", fmt.Errorf("tls: %w", x509.HostnameError{Host: "b"}), proxystatus.TLSCertificateError},
		{"tls alert", tls.AlertError(40), proxystatus.TLSProtocolError},
		{"tls alert in OpError", &net.OpError{Op: "remote error", Err: tls.AlertError(70)}, proxystatus.TLSProtocolError},
		{"tls record header", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, proxystatus.TLSProtocolError},
		{"unknown error", errors.New("something else"), proxystatus.ConnectionRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := upstream.Classify(tt.err)
			if got == nil {
				t.Fatal("Classify returned nil")
			}
			if got.Type != tt.want {
				t.Errorf("Classify(%v) = %v (%q), want %v", tt.err, got.Type, got.Detail, tt.want)
			}
			if got.Detail == "" {
				t.Errorf("no detail")
			}
		})
	}
}

func TestClassifyPassesThrough(t *testing.T) {
	if upstream.Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	pe := &proxystatus.Error{Type: proxystatus.ProxyLoopDetected, Detail: "mine"}
	if got := upstream.Classify(pe); got != pe {
		t.Errorf("Classify(*Error) = %v, want the same pointer", got)
	}
	// An *Error wrapped around an errno that would classify otherwise still wins.
	wrapped := fmt.Errorf("dial: %w", pe)
	if got := upstream.Classify(wrapped); got != pe {
		t.Errorf("Classify(wrapped *Error) = %v, want the same pointer", got)
	}
}

// TestClassifyRealErrors classifies errors the kernel and the net package
// really return on loopback.
func TestClassifyRealErrors(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		_, err := net.Dial("tcp", closedPort(t))
		if got := upstream.Classify(err); got.Type != proxystatus.ConnectionRefused {
			t.Errorf("%v → %v", err, got.Type)
		}
	})
	t.Run("reset", func(t *testing.T) {
		ln := listen(t)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				// Reset only after the client's connect surely completed.
				_, _ = c.Read(make([]byte, 1))
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		_, err = c.Read(make([]byte, 1))
		if got := upstream.Classify(err); got.Type != proxystatus.ConnectionTerminated {
			t.Errorf("%v → %v", err, got.Type)
		}
	})
	t.Run("expired context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		defer cancel()
		var d net.Dialer
		_, err := d.DialContext(ctx, "tcp", "127.0.0.1:1")
		if got := upstream.Classify(err); got.Type != proxystatus.ConnectionTimeout {
			t.Errorf("%v → %v", err, got.Type)
		}
	})
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// listen returns a loopback TCP listener closed at the end of the test.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

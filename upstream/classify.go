package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/proxyto/proxyto/proxystatus"
)

// Classify maps a dial, TLS or I/O error to the *proxystatus.Error the client
// sees. An error that already is one is returned unchanged.
func Classify(err error) *proxystatus.Error {
	var pe *proxystatus.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, syscall.ECONNREFUSED):
		return proxystatus.New(proxystatus.ConnectionRefused, "upstream refused the connection")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return proxystatus.New(proxystatus.ConnectionTerminated, "upstream reset the connection")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return proxystatus.New(proxystatus.ConnectionTerminated, "upstream closed the connection")
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return proxystatus.New(proxystatus.ConnectionRefused, "upstream unreachable")
	case isTLSCert(err):
		return proxystatus.New(proxystatus.TLSCertificateError, "upstream TLS certificate did not verify")
	case isTLS(err):
		return proxystatus.New(proxystatus.TLSProtocolError, "TLS handshake with upstream failed")
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return proxystatus.New(proxystatus.ConnectionTimeout, "upstream did not accept the connection in time")
	}
	return proxystatus.New(proxystatus.ConnectionRefused, "could not connect to upstream")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isTLSCert(err error) bool {
	var (
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
	)
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &cve)
}

func isTLS(err error) bool {
	var (
		rh tls.RecordHeaderError
		ae tls.AlertError
	)
	return errors.As(err, &rh) || errors.As(err, &ae)
}

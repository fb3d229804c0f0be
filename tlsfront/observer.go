package tlsfront

import (
	"crypto/tls"
	"time"
)

// Observer hears what the TLS listener does, for metrics and logs. Its
// methods are called concurrently, from handshake goroutines (and Reload's
// caller), and must not block. Nothing passed to it identifies a client.
type Observer interface {
	// HandshakeDone reports a completed handshake: the negotiated version
	// (see VersionIndex) and how long the handshake itself took.
	HandshakeDone(version uint16, d time.Duration)
	// HandshakeFailed reports a connection closed before its handshake
	// completed, and how long after accept.
	HandshakeFailed(f Failure, d time.Duration)
	// CertificateLoaded reports a load of the certificate pair (New, then
	// each Reload): ok, with the leaf's expiry, or failed (the previous
	// pair stays in use).
	CertificateLoaded(ok bool, notAfter time.Time)
}

type nopObserver struct{}

func (nopObserver) HandshakeDone(uint16, time.Duration)    {}
func (nopObserver) HandshakeFailed(Failure, time.Duration) {}
func (nopObserver) CertificateLoaded(bool, time.Time)      {}

// Failure classifies why a connection ended before its handshake completed.
// It is a closed set, fit for a metric label.
type Failure uint8

// The failure classes.
const (
	FailTimeout        Failure = iota // PROXY header and handshake not done within HandshakeTimeout
	FailEOF                           // the client closed or reset the connection
	FailNotTLS                        // the first bytes are not a TLS handshake (plain HTTP; a PROXY header from a peer not in ProxyPeers)
	FailProxyHeader                   // a peer in ProxyPeers sent no valid PROXY header
	FailVersion                       // the client offers no TLS version from 1.2 up
	FailNegotiation                   // no cipher suite, curve or ALPN protocol in common
	FailClientRejected                // the client aborted with an alert (most often: it does not trust the certificate)
	FailRefused                       // Admit refused the client
	FailOther                         // anything else
	NumFailures                       // number of classes, for arrays indexed by Failure
)

var failureNames = [NumFailures]string{
	FailTimeout:        "timeout",
	FailEOF:            "eof",
	FailNotTLS:         "not_tls",
	FailProxyHeader:    "proxy_header",
	FailVersion:        "version",
	FailNegotiation:    "negotiation",
	FailClientRejected: "client_rejected",
	FailRefused:        "refused",
	FailOther:          "other",
}

// String returns the class's label value ("timeout", "not_tls", ...).
func (f Failure) String() string {
	if f >= NumFailures {
		return failureNames[FailOther]
	}
	return failureNames[f]
}

// Versions names the TLS versions the listener negotiates, for a metric
// label: a closed set indexed by VersionIndex.
var Versions = [...]string{"1.2", "1.3", "other"}

// VersionIndex maps a negotiated version to its index in Versions.
func VersionIndex(v uint16) int {
	switch v {
	case tls.VersionTLS12:
		return 0
	case tls.VersionTLS13:
		return 1
	}
	return 2
}

package main

import (
	"errors"

	"github.com/proxyto/proxyto/httpparse"
)

// Errors of the client-side flags (--tls-listen, --tls-cert, --tls-key,
// --proxy-protocol-from, --compress).
var (
	// errTLSPair occurs when --tls-listen is given without both --tls-cert
	// and --tls-key, or either of those without --tls-listen.
	errTLSPair = errors.New("proxyto: --tls-listen needs --tls-cert and --tls-key, and they need --tls-listen")

	// errClientSideNotWired occurs when a client-side flag is set in a build
	// whose engine does not take it yet: refusing beats a flag silently
	// ignored.
	errClientSideNotWired = errors.New("proxyto: --tls-listen, --proxy-protocol-from and --compress are not supported by this build's engine")
)

// checkClientSide validates the client-side flags and refuses them while the
// engine cannot apply them.
func (r *runCmd) checkClientSide() error {
	if (r.TLSListen != "") != (r.TLSCert != "" && r.TLSKey != "") || (r.TLSCert != "") != (r.TLSKey != "") {
		return errTLSPair
	}
	peers, err := httpparse.ParseProxyPeers(r.ProxyProtocolFrom)
	if err != nil {
		return err
	}
	if r.TLSListen != "" || !peers.Empty() || r.Compress {
		return errClientSideNotWired
	}
	return nil
}

package main

import (
	"errors"

	"github.com/proxyto/proxyto/httpparse"
)

// Errors of the client-side flags (--listen, --tls-listen, --tls-cert,
// --tls-key, --proxy-protocol-from).
var (
	// errTLSPair occurs when --tls-listen is given without both --tls-cert
	// and --tls-key, or either of those without --tls-listen.
	errTLSPair = errors.New("proxyto: --tls-listen needs --tls-cert and --tls-key, and they need --tls-listen")

	// errNoListener occurs when --listen is empty and there is no
	// --tls-listen either: no client could ever connect.
	errNoListener = errors.New(`proxyto: --listen "" needs --tls-listen: without either no client can connect`)
)

// checkClientSide validates the client-side flags and returns the PROXY
// protocol peers.
func (r *runCmd) checkClientSide() (httpparse.ProxyPeers, error) {
	if (r.TLSListen != "") != (r.TLSCert != "" && r.TLSKey != "") || (r.TLSCert != "") != (r.TLSKey != "") {
		return httpparse.ProxyPeers{}, errTLSPair
	}
	if r.Listen == "" && r.TLSListen == "" {
		return httpparse.ProxyPeers{}, errNoListener
	}
	return httpparse.ParseProxyPeers(r.ProxyProtocolFrom)
}

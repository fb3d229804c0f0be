package upstream

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/proxyto/proxyto/internal/bridge"
	"github.com/proxyto/proxyto/proxystatus"
)

// gnet has no TLS, so an https upstream is handshaken here,
// off the loops, and bridged (internal/bridge) to one end of a socketpair
// whose other end the engine enrolls on its loop as if it were a plain TCP
// upstream. Plain upstreams pay nothing.

func (d *Dialer) tlsBridge(ctx context.Context, raw net.Conn, host string) (net.Conn, error) {
	var cfg *tls.Config
	if d.TLS != nil {
		cfg = d.TLS.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		pe := Classify(err)
		if pe.Type != proxystatus.TLSCertificateError && pe.Type != proxystatus.ConnectionTimeout {
			pe = proxystatus.New(proxystatus.TLSProtocolError, "TLS handshake with upstream failed")
		}
		return nil, pe
	}
	c, err := bridge.Start(tc)
	if err != nil {
		return nil, proxystatus.New(proxystatus.ProxyInternalError, "socketpair failed")
	}
	return c, nil
}

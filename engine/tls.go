package engine

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// upstreamTLS builds the client TLS configuration for https upstreams.
func upstreamTLS(cfg Config) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureUpstreamTLS} //nolint:gosec // opt-in flag
	if cfg.UpstreamCAFile != "" {
		pem, err := os.ReadFile(cfg.UpstreamCAFile)
		if err != nil {
			return nil, fmt.Errorf("proxyto: upstream CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("proxyto: upstream CA file %s holds no PEM certificate", cfg.UpstreamCAFile)
		}
		t.RootCAs = pool
	}
	return t, nil
}

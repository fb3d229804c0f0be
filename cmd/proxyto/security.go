package main

import (
	"net/netip"

	"github.com/proxyto/proxyto/engine"
)

// buildAuth returns the client authenticator for the flags, or nil when no
// client authentication is configured. PROVISIONAL.
func buildAuth(users []string, htpasswd string) (engine.Authenticator, error) {
	return nil, nil
}

// buildUpstreamCheck returns the allow/deny check for the flags. PROVISIONAL.
func buildUpstreamCheck(allow, deny []string) (func(string, netip.Addr) error, error) {
	return nil, nil
}

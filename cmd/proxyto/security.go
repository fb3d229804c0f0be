package main

import (
	"net/netip"

	"github.com/proxyto/proxyto/acl"
	"github.com/proxyto/proxyto/auth"
	"github.com/proxyto/proxyto/engine"
)

// The auth package's Basic, and the Holder that reloads it, are the
// engine's Authenticator.
var (
	_ engine.Authenticator = (*auth.Basic)(nil)
	_ engine.Authenticator = (*auth.Holder)(nil)
)

// buildAuth returns the client authenticator for --auth-users and
// --auth-htpasswd (either or both), or nil when neither is given; SIGHUP
// reloads its htpasswd file. Errors name the bad entry or htpasswd line,
// never a password or hash.
func buildAuth(users []string, htpasswd string) (*auth.Holder, error) {
	if len(users) == 0 && htpasswd == "" {
		return nil, nil
	}
	return auth.NewHolder(auth.Options{Users: users, HtpasswdFile: htpasswd})
}

// buildUpstreamCheck returns the upstream check for --allow, --deny and
// --allow-link-local. It is never nil: with no lists it still refuses
// link-local, metadata, unspecified and multicast addresses unless
// allowLinkLocal lifts the first two.
func buildUpstreamCheck(allow, deny []string, allowLinkLocal bool) (func(string, netip.Addr) error, error) {
	l, err := acl.New(allow, deny, acl.Options{AllowLinkLocal: allowLinkLocal})
	if err != nil {
		return nil, err
	}
	return l.Check, nil
}

package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/proxyto/proxyto/acl"
	"github.com/proxyto/proxyto/proxystatus"
)

// Dialer opens transport connections to upstream proxies. Its zero value
// dials with a 10s timeout and the system resolver, refusing link-local and
// metadata addresses. It is safe for concurrent use; Dial blocks and must not
// run on an event loop.
type Dialer struct {
	// Timeout bounds DNS plus TCP connect (and the TLS handshake for https
	// upstreams). Default 10s.
	Timeout time.Duration
	// Lookup resolves upstream names (and socks5 targets, see Resolve): the
	// engine passes its name cache (dnscache.Resolver.Lookup). It is called
	// for names only: IP literals and names under "invalid" never reach it.
	// Its errors should be *proxystatus.Error values of type DNSError.
	// nil: Resolver.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// Resolver resolves upstream names when Lookup is nil. nil:
	// net.DefaultResolver.
	Resolver *net.Resolver
	// Check refuses upstreams by allow/deny rules given the host as written
	// and each resolved address; its error should be a *proxystatus.Error.
	// nil allows all.
	Check func(host string, addr netip.Addr) error
	// IsSelf reports whether addr is one of proxyto's own listeners (a loop).
	// nil: no loop detection.
	IsSelf func(addr netip.AddrPort) bool
	// AllowLinkLocal lets link-local and cloud-metadata addresses through.
	AllowLinkLocal bool
	// TLS is the client configuration for https upstreams; ServerName is
	// set per dial. nil: a default configuration verifying certificates.
	TLS *tls.Config
}

// Target names an upstream proxy endpoint. Host has no brackets.
type Target struct {
	Host string
	Port uint16
	TLS  bool // https upstream: handshake TLS and bridge it
	// Addrs, when not empty, are Host's addresses, resolved already (an
	// event loop that found them in the name cache): Dial connects to them
	// without resolving. The rules still apply to each.
	Addrs []netip.Addr
}

// Dial resolves and connects to t, returning a connection gnet can enroll
// (a *net.TCPConn, or for TLS a *net.UnixConn bridged to the TLS session).
func (d *Dialer) Dial(ctx context.Context, t Target) (net.Conn, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	addrs := t.Addrs
	if len(addrs) == 0 {
		var err error
		if addrs, err = d.resolve(ctx, t.Host); err != nil {
			return nil, err
		}
	}
	var lastErr error
	// No TCP keepalive: idle tunnels end by the tunnel idle timeout, and probes
	// for 100,000 of them would be traffic of their own.
	nd := net.Dialer{KeepAlive: -1}
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, t.Port)
		if err := d.allowed(t.Host, ap); err != nil {
			lastErr = err
			continue
		}
		c, err := nd.DialContext(ctx, "tcp", ap.String())
		if err != nil {
			lastErr = Classify(err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if !t.TLS {
			return c, nil
		}
		return d.tlsBridge(ctx, c, t.Host)
	}
	if lastErr == nil {
		lastErr = proxystatus.New(proxystatus.DNSError, "upstream name has no usable address")
	}
	return nil, lastErr
}

// Resolve returns the addresses of host (an IP literal is returned as is).
// The engine uses it for socks5 targets, which proxyto resolves itself.
func (d *Dialer) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return d.resolve(ctx, host)
}

func (d *Dialer) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if isInvalidName(host) {
		// RFC 6761 §6.4: names under "invalid." never resolve; answer at
		// once rather than asking a DNS server.
		return nil, proxystatus.New(proxystatus.DNSError, "upstream name does not resolve")
	}
	if d.Lookup != nil {
		addrs, err := d.Lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, proxystatus.New(proxystatus.DNSError, "upstream name does not resolve")
		}
		return addrs, nil
	}
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsTimeout {
			return nil, proxystatus.New(proxystatus.DNSError, "upstream name lookup timed out")
		}
		if ctx.Err() != nil {
			return nil, proxystatus.New(proxystatus.DNSError, "upstream name lookup timed out")
		}
		return nil, proxystatus.New(proxystatus.DNSError, "upstream name does not resolve")
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	if len(addrs) == 0 {
		return nil, proxystatus.New(proxystatus.DNSError, "upstream name does not resolve")
	}
	return addrs, nil
}

// Allowed returns nil when ap, an address of host (as written), may be
// dialed: the built-in refusals, the loop check and the rules. It does not
// block, so a loop may call it before connecting itself.
func (d *Dialer) Allowed(host string, ap netip.AddrPort) error { return d.allowed(host, ap) }

// allowed applies the built-in refusals, the loop check and the rules.
func (d *Dialer) allowed(host string, ap netip.AddrPort) error {
	a := ap.Addr()
	if !d.AllowLinkLocal && acl.IsLinkLocalOrMetadata(host, a) {
		return proxystatus.New(proxystatus.DestinationIPProhibited, "upstream address is link-local or cloud metadata")
	}
	if d.IsSelf != nil && d.IsSelf(ap) {
		return proxystatus.New(proxystatus.ProxyLoopDetected, "upstream is proxyto itself")
	}
	if d.Check != nil {
		if err := d.Check(host, a); err != nil {
			var pe *proxystatus.Error
			if errors.As(err, &pe) {
				return pe
			}
			return proxystatus.New(proxystatus.DestinationIPProhibited, "upstream refused by rule")
		}
	}
	return nil
}

// isInvalidName reports whether host is "invalid" or ends in ".invalid"
// (with or without a final dot), in any case.
func isInvalidName(host string) bool {
	host = strings.TrimSuffix(host, ".")
	const tld = "invalid"
	if len(host) < len(tld) || !strings.EqualFold(host[len(host)-len(tld):], tld) {
		return false
	}
	return len(host) == len(tld) || host[len(host)-len(tld)-1] == '.'
}

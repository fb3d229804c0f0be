package httpparse

import (
	"errors"
	"net/netip"
	"strings"
)

// ErrProxyPeer occurs when an entry of the list given to ParseProxyPeers is
// neither a CIDR prefix nor an IP address. The error returned wraps it and
// names the entry (configuration, never client input).
var ErrProxyPeer = errors.New("proxyto: PROXY protocol peer is not a CIDR prefix or IP address")

// ProxyPeers is the set of peers that must open their connections with a
// PROXY protocol header (load balancers). The zero value is the empty set.
// It is read-only after ParseProxyPeers and safe for concurrent use.
type ProxyPeers struct {
	prefixes []netip.Prefix
}

// ParseProxyPeers builds the set from entries such as "10.0.0.0/8",
// "2001:db8::/32" or a single address ("192.0.2.7"). Entries are trimmed of
// spaces; empty ones are skipped. IPv4-mapped IPv6 prefixes
// ("::ffff:10.0.0.0/104") are stored as the IPv4 prefix they denote, since
// Contains unmaps the address it is given.
func ParseProxyPeers(entries []string) (ProxyPeers, error) {
	var p ProxyPeers
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		var pfx netip.Prefix
		var err error
		if strings.IndexByte(e, '/') >= 0 {
			pfx, err = netip.ParsePrefix(e)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(e); err == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || strings.IndexByte(e, '%') >= 0 {
			return ProxyPeers{}, &proxyPeerError{entry: e}
		}
		if a := pfx.Addr(); a.Is4In6() {
			if pfx.Bits() < 96 {
				return ProxyPeers{}, &proxyPeerError{entry: e}
			}
			pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
		}
		p.prefixes = append(p.prefixes, pfx.Masked())
	}
	return p, nil
}

// proxyPeerError names the bad entry of a ParseProxyPeers list.
type proxyPeerError struct{ entry string }

func (e *proxyPeerError) Error() string {
	return ErrProxyPeer.Error() + ": " + e.entry
}

func (e *proxyPeerError) Unwrap() error { return ErrProxyPeer }

// Contains reports whether a (unmapped first: a dual-stack listener sees
// IPv4 peers as ::ffff:a.b.c.d) lies in one of the prefixes. It does not
// allocate.
func (p *ProxyPeers) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range p.prefixes {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// Empty reports whether the set has no prefix: no peer sends PROXY headers.
func (p *ProxyPeers) Empty() bool { return len(p.prefixes) == 0 }

// String returns the prefixes, comma-separated, for logs.
func (p *ProxyPeers) String() string {
	var b strings.Builder
	for i, pfx := range p.prefixes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pfx.String())
	}
	return b.String()
}

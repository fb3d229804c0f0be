// Package acl decides which upstream proxies proxyto may dial (docs/behaviour.md, "Operation"):
// allow and deny lists of CIDRs, single IPs, exact host names and host-name
// suffixes, plus built-in refusals of link-local and cloud-metadata
// addresses.
//
// Rules, in order:
//
//  1. Unless Options.AllowLinkLocal: link-local addresses (169.254.0.0/16,
//     fe80::/10), cloud metadata endpoints (169.254.169.254, fd00:ec2::254,
//     100.100.100.200, the name metadata.google.internal), and addresses no
//     upstream can have (unspecified 0.0.0.0 and ::, multicast) are refused.
//     An allow entry does not lift this; Options.AllowLinkLocal does.
//  2. An upstream matching any deny entry is refused: deny wins over allow.
//  3. If the allow list is non-empty, an upstream matching no allow entry is
//     refused.
//  4. Anything else may be dialed. Loopback is allowed.
//
// An upstream matches an entry when its host name as written matches a host
// entry, or the address it resolved to lies in a CIDR or IP entry. IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d) are matched as IPv4, and zones are ignored.
// Checking the resolved address as well as the name is what stops a name that
// is allowed from resolving to an address that is denied.
package acl

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/proxyto/proxyto/proxystatus"
)

// Errors returned by Check. Each is a *proxystatus.Error answered 403 with
// Proxy-Status destination_ip_prohibited; none names the upstream. They are
// shared values: compare them with errors.Is, never modify them.
var (
	// ErrDenied occurs when the upstream matches a deny entry.
	ErrDenied error = proxystatus.New(proxystatus.DestinationIPProhibited, "upstream refused by deny rule")
	// ErrNotAllowed occurs when an allow list is configured and the upstream
	// matches none of its entries.
	ErrNotAllowed error = proxystatus.New(proxystatus.DestinationIPProhibited, "upstream refused: not in allow list")
	// ErrLinkLocal occurs when the upstream is on a link-local or
	// cloud-metadata address (or names metadata.google.internal) and
	// Options.AllowLinkLocal is false.
	ErrLinkLocal error = proxystatus.New(proxystatus.DestinationIPProhibited, "upstream refused: link-local or metadata address")
	// ErrUnroutable occurs when the upstream resolved to an unspecified
	// (0.0.0.0, ::) or multicast address, which no upstream proxy can have.
	ErrUnroutable error = proxystatus.New(proxystatus.DestinationIPProhibited, "upstream refused: unspecified or multicast address")
)

// ErrInvalidEntry is returned by New, wrapped with the list, the entry's
// position and what is wrong with it.
//
// It occurs when an allow or deny entry is empty, is a malformed CIDR or IP,
// carries a port, a scheme, a path or an IPv6 zone, or is not a valid host
// name or suffix pattern.
var ErrInvalidEntry = errors.New("proxyto: acl: invalid allow/deny entry")

// Options tunes New. The zero value is the secure default.
type Options struct {
	// AllowLinkLocal lets upstreams on link-local and cloud-metadata
	// addresses through. Default false.
	AllowLinkLocal bool
}

// List is a compiled set of allow and deny rules. Build it with New. Its
// methods are safe for concurrent use; it is never modified after New.
type List struct {
	allow, deny    rules
	allowLinkLocal bool
}

// rules is one list, split by entry kind.
type rules struct {
	prefixes []netip.Prefix // CIDRs and single IPs (as /32 or /128), IPv4 unmapped
	hosts    []string       // exact names, lower case, no trailing dot
	suffixes []string       // ".example.com", lower case
}

// metadataAddrs are cloud metadata endpoints outside link-local space
// (169.254.169.254, used by AWS, GCP, Azure and others, is link-local).
var metadataAddrs = [...]netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

// metadataHosts are names of metadata endpoints refused whatever they
// resolve to.
var metadataHosts = [...]string{
	"metadata.google.internal",
}

// New compiles allow and deny entries. Each entry is one of:
//
//	10.0.0.0/8, 2001:db8::/32   CIDR
//	192.0.2.7, 2001:db8::1       single IP
//	proxy.example.com            exact host name, case-insensitive
//	.example.com, *.example.com  any subdomain of example.com (not example.com itself)
//
// Surrounding spaces are ignored. An invalid entry is an error naming the
// list and position (and the entry itself unless it looks like it holds
// credentials).
func New(allow, deny []string, opts Options) (*List, error) {
	l := &List{allowLinkLocal: opts.AllowLinkLocal}
	if err := l.allow.add("allow", allow); err != nil {
		return nil, err
	}
	if err := l.deny.add("deny", deny); err != nil {
		return nil, err
	}
	return l, nil
}

// add compiles entries into r.
func (r *rules) add(list string, entries []string) error {
	for i, raw := range entries {
		e := strings.TrimSpace(raw)
		if err := r.addOne(e); err != nil {
			shown := fmt.Sprintf(" %q", e)
			if strings.Contains(e, "@") {
				shown = "" // "user:pass@host" was probably meant; don't echo it
			}
			return fmt.Errorf("%w: %s entry %d%s: %s", ErrInvalidEntry, list, i+1, shown, err)
		}
	}
	return nil
}

// addOne compiles one trimmed entry. Its error is a short reason.
func (r *rules) addOne(e string) error {
	switch {
	case e == "":
		return errors.New("empty")
	case strings.Contains(e, "@"):
		return errors.New("user info (user:password@) is not allowed; give a host name, IP or CIDR")
	case strings.Contains(e, "/"):
		p, err := netip.ParsePrefix(e)
		if err != nil {
			if strings.Contains(e, "://") {
				return errors.New("a scheme is not allowed; give a host name, IP or CIDR")
			}
			return errors.New("malformed CIDR")
		}
		r.prefixes = append(r.prefixes, unmapPrefix(p.Masked()))
		return nil
	}
	if a, err := netip.ParseAddr(e); err == nil {
		if a.Zone() != "" {
			return errors.New("an IPv6 zone is not allowed")
		}
		a = a.Unmap()
		r.prefixes = append(r.prefixes, netip.PrefixFrom(a, a.BitLen()))
		return nil
	}
	if strings.HasPrefix(e, "[") {
		return errors.New("give an IPv6 address without brackets or port")
	}
	name := strings.ToLower(e)
	suffix := false
	switch {
	case strings.HasPrefix(name, "*."):
		name, suffix = name[2:], true
	case strings.HasPrefix(name, "."):
		name, suffix = name[1:], true
	}
	name = strings.TrimSuffix(name, ".")
	if why := checkHostName(name); why != "" {
		return errors.New(why)
	}
	if suffix {
		r.suffixes = append(r.suffixes, "."+name)
	} else {
		r.hosts = append(r.hosts, name)
	}
	return nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n ≥ 96) into a.b.c.d/(n-96), so that it
// matches the unmapped addresses Check compares.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// checkHostName returns why name (lower case, no trailing dot) is not a host
// name, or "".
func checkHostName(name string) string {
	if name == "" {
		return "empty host name"
	}
	if strings.Contains(name, ":") {
		return "a port is not allowed; give a host name, IP or CIDR"
	}
	if len(name) > 253 {
		return "host name longer than 253 bytes"
	}
	numeric := false
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return "empty or over-long label in host name"
		}
		numeric = strings.Trim(label, "0123456789") == ""
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "host name may hold only letters, digits, '-', '_' and '.' (a '*' only as a leading '*.')"
			}
		}
	}
	if numeric {
		// No top-level domain is all digits: this was meant as an IP.
		return "not a valid IP address, and not a host name (all-digit last label)"
	}
	return ""
}

// Check returns nil if the upstream named host (as written in X-Proxy-To,
// without port) that resolved to addr may be dialed, or one of ErrLinkLocal,
// ErrUnroutable, ErrDenied, ErrNotAllowed. An invalid addr matches no address
// rule, so with an allow list of CIDRs only it is refused. Check does not
// allocate and is safe for concurrent use.
func (l *List) Check(host string, addr netip.Addr) error {
	host = normHost(host)
	addr = addr.Unmap().WithZone("")
	if !l.allowLinkLocal && IsLinkLocalOrMetadata(host, addr) {
		return ErrLinkLocal
	}
	if addr.IsValid() && (addr.IsUnspecified() || addr.IsMulticast()) {
		return ErrUnroutable
	}
	if l.deny.match(host, addr) {
		return ErrDenied
	}
	if !l.allow.empty() && !l.allow.match(host, addr) {
		return ErrNotAllowed
	}
	return nil
}

// normHost strips brackets around an IPv6 literal and one trailing dot.
func normHost(h string) string {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(h, ".")
}

// IsLinkLocalOrMetadata reports the built-in refusals of rule 1: host
// (as written, without port; "" when unknown) or addr is link-local or a
// cloud metadata endpoint. It is the one list proxyto keeps of them; the
// upstream dialer applies it too when no rules are configured. It does not
// allocate.
func IsLinkLocalOrMetadata(host string, addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	if addr.IsLinkLocalUnicast() {
		return true
	}
	for _, m := range metadataAddrs {
		if addr == m {
			return true
		}
	}
	for _, m := range metadataHosts {
		if strings.EqualFold(host, m) {
			return true
		}
	}
	return false
}

func (r *rules) empty() bool {
	return len(r.prefixes) == 0 && len(r.hosts) == 0 && len(r.suffixes) == 0
}

// match reports whether host or addr matches any entry of r.
func (r *rules) match(host string, addr netip.Addr) bool {
	if addr.IsValid() {
		for _, p := range r.prefixes {
			if p.Contains(addr) {
				return true
			}
		}
	}
	if host == "" {
		return false
	}
	for _, h := range r.hosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	for _, s := range r.suffixes {
		if len(host) > len(s) && strings.EqualFold(host[len(host)-len(s):], s) {
			return true
		}
	}
	return false
}

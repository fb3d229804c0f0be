package acl

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/proxystatus"
)

func ip(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		allow []string
		deny  []string
		opts  Options
		host  string
		addr  string
		want  error
	}{
		// Defaults with no lists.
		{name: "public v4 allowed", host: "proxy.example.com", addr: "203.0.113.5", want: nil},
		{name: "public v6 allowed", host: "proxy.example.com", addr: "2001:db8::5", want: nil},
		{name: "loopback v4 allowed", host: "127.0.0.1", addr: "127.0.0.1", want: nil},
		{name: "loopback v6 allowed", host: "::1", addr: "::1", want: nil},
		{name: "private allowed", host: "10.1.2.3", addr: "10.1.2.3", want: nil},
		{name: "link-local v4", host: "169.254.10.1", addr: "169.254.10.1", want: ErrLinkLocal},
		{name: "metadata v4", host: "169.254.169.254", addr: "169.254.169.254", want: ErrLinkLocal},
		{name: "metadata aws v6", host: "fd00:ec2::254", addr: "fd00:ec2::254", want: ErrLinkLocal},
		{name: "metadata alibaba", host: "100.100.100.200", addr: "100.100.100.200", want: ErrLinkLocal},
		{name: "alibaba neighbour allowed", host: "100.100.100.201", addr: "100.100.100.201", want: nil},
		{name: "link-local v6", host: "fe80::1", addr: "fe80::1", want: ErrLinkLocal},
		{name: "link-local v6 with zone", host: "fe80::1%eth0", addr: "fe80::1%eth0", want: ErrLinkLocal},
		{name: "link-local v6 edge", host: "febf::1", addr: "febf::1", want: ErrLinkLocal},
		{name: "just past fe80::/10", host: "fec0::1", addr: "fec0::1", want: nil},
		{name: "metadata by name", host: "metadata.google.internal", addr: "10.9.9.9", want: ErrLinkLocal},
		{name: "metadata by name, case and dot", host: "Metadata.Google.Internal.", addr: "", want: ErrLinkLocal},
		{name: "name resolving to metadata", host: "innocent.example.com", addr: "169.254.169.254", want: ErrLinkLocal},
		{name: "mapped metadata", host: "x", addr: "::ffff:169.254.169.254", want: ErrLinkLocal},
		{name: "mapped alibaba", host: "x", addr: "::ffff:100.100.100.200", want: ErrLinkLocal},
		{name: "unspecified v4", host: "0.0.0.0", addr: "0.0.0.0", want: ErrUnroutable},
		{name: "unspecified v6", host: "::", addr: "::", want: ErrUnroutable},
		{name: "multicast", host: "224.0.0.1", addr: "224.0.0.1", want: ErrUnroutable},
		{name: "bracketed v6 host", host: "[2001:db8::5]", addr: "2001:db8::5", want: nil},

		// AllowLinkLocal lifts the link-local and metadata refusals only.
		{name: "allow link-local: metadata", opts: Options{AllowLinkLocal: true}, host: "169.254.169.254", addr: "169.254.169.254", want: nil},
		{name: "allow link-local: name", opts: Options{AllowLinkLocal: true}, host: "metadata.google.internal", addr: "169.254.169.254", want: nil},
		{name: "allow link-local: fe80", opts: Options{AllowLinkLocal: true}, host: "fe80::1", addr: "fe80::1", want: nil},
		{name: "allow link-local: deny still wins", opts: Options{AllowLinkLocal: true}, deny: []string{"169.254.0.0/16"}, host: "x", addr: "169.254.169.254", want: ErrDenied},
		{name: "allow link-local: unspecified still refused", opts: Options{AllowLinkLocal: true}, host: "0.0.0.0", addr: "0.0.0.0", want: ErrUnroutable},
		{name: "allow entry does not lift link-local", allow: []string{"169.254.0.0/16"}, host: "x", addr: "169.254.169.254", want: ErrLinkLocal},

		// CIDR entries.
		{name: "deny cidr v4", deny: []string{"10.0.0.0/8"}, host: "10.2.3.4", addr: "10.2.3.4", want: ErrDenied},
		{name: "deny cidr v4 outside", deny: []string{"10.0.0.0/8"}, host: "11.2.3.4", addr: "11.2.3.4", want: nil},
		{name: "deny cidr unmasked entry", deny: []string{"10.1.2.3/8"}, host: "x", addr: "10.200.0.1", want: ErrDenied},
		{name: "deny cidr v6", deny: []string{"2001:db8::/32"}, host: "x", addr: "2001:db8:1::1", want: ErrDenied},
		{name: "deny cidr v6 outside", deny: []string{"2001:db8::/32"}, host: "x", addr: "2001:db9::1", want: nil},
		{name: "deny cidr v4 catches mapped", deny: []string{"10.0.0.0/8"}, host: "x", addr: "::ffff:10.0.0.1", want: ErrDenied},
		{name: "deny mapped cidr catches v4", deny: []string{"::ffff:10.0.0.0/104"}, host: "x", addr: "10.0.0.1", want: ErrDenied},
		{name: "deny v4 cidr not v6", deny: []string{"0.0.0.0/0"}, host: "x", addr: "2001:db8::1", want: nil},
		{name: "allow cidr inside", allow: []string{"192.0.2.0/24"}, host: "x", addr: "192.0.2.9", want: nil},
		{name: "allow cidr outside", allow: []string{"192.0.2.0/24"}, host: "x", addr: "198.51.100.1", want: ErrNotAllowed},
		{name: "allow cidr, no address", allow: []string{"192.0.2.0/24"}, host: "x", addr: "", want: ErrNotAllowed},

		// Single IPs.
		{name: "deny ip", deny: []string{"203.0.113.7"}, host: "x", addr: "203.0.113.7", want: ErrDenied},
		{name: "deny ip neighbour", deny: []string{"203.0.113.7"}, host: "x", addr: "203.0.113.8", want: nil},
		{name: "deny ip v6", deny: []string{"2001:db8::7"}, host: "x", addr: "2001:db8::7", want: ErrDenied},
		{name: "deny mapped ip entry", deny: []string{"::ffff:203.0.113.7"}, host: "x", addr: "203.0.113.7", want: ErrDenied},
		{name: "allow ip", allow: []string{"127.0.0.1"}, host: "localhost", addr: "127.0.0.1", want: nil},
		{name: "allow ip other", allow: []string{"127.0.0.1"}, host: "localhost", addr: "127.0.0.2", want: ErrNotAllowed},

		// Exact host names.
		{name: "deny host", deny: []string{"bad.example.com"}, host: "bad.example.com", addr: "203.0.113.1", want: ErrDenied},
		{name: "deny host case", deny: []string{"Bad.Example.COM"}, host: "bAD.example.com", addr: "203.0.113.1", want: ErrDenied},
		{name: "deny host trailing dot", deny: []string{"bad.example.com."}, host: "bad.example.com.", addr: "203.0.113.1", want: ErrDenied},
		{name: "deny host not subdomain", deny: []string{"bad.example.com"}, host: "x.bad.example.com", addr: "203.0.113.1", want: nil},
		{name: "deny host not parent", deny: []string{"bad.example.com"}, host: "example.com", addr: "203.0.113.1", want: nil},
		{name: "allow host", allow: []string{"proxy.example.com"}, host: "PROXY.example.com", addr: "203.0.113.1", want: nil},
		{name: "allow host other", allow: []string{"proxy.example.com"}, host: "proxy.example.org", addr: "203.0.113.1", want: ErrNotAllowed},

		// Suffix patterns.
		{name: "deny suffix dot", deny: []string{".example.com"}, host: "a.example.com", addr: "203.0.113.1", want: ErrDenied},
		{name: "deny suffix star", deny: []string{"*.example.com"}, host: "a.b.EXAMPLE.com", addr: "203.0.113.1", want: ErrDenied},
		{name: "suffix not apex", deny: []string{"*.example.com"}, host: "example.com", addr: "203.0.113.1", want: nil},
		{name: "suffix label boundary", deny: []string{".example.com"}, host: "badexample.com", addr: "203.0.113.1", want: nil},
		{name: "allow suffix", allow: []string{"*.proxies.example"}, host: "p1.proxies.example", addr: "203.0.113.1", want: nil},
		{name: "allow suffix other", allow: []string{"*.proxies.example"}, host: "p1.proxies.example.evil", addr: "203.0.113.1", want: ErrNotAllowed},

		// Deny over allow, and names against addresses.
		{name: "deny host over allow cidr", allow: []string{"203.0.113.0/24"}, deny: []string{"bad.example.com"}, host: "bad.example.com", addr: "203.0.113.1", want: ErrDenied},
		{name: "deny cidr over allow host", allow: []string{"proxy.example.com"}, deny: []string{"10.0.0.0/8"}, host: "proxy.example.com", addr: "10.0.0.5", want: ErrDenied},
		{name: "deny suffix over allow host", allow: []string{"a.example.com"}, deny: []string{".example.com"}, host: "a.example.com", addr: "203.0.113.1", want: ErrDenied},
		{name: "deny ip over allow same ip", allow: []string{"203.0.113.1"}, deny: []string{"203.0.113.1"}, host: "x", addr: "203.0.113.1", want: ErrDenied},
		{name: "allowed by name though address unlisted", allow: []string{"proxy.example.com", "10.0.0.0/8"}, host: "proxy.example.com", addr: "203.0.113.1", want: nil},
		{name: "allowed by address though name unlisted", allow: []string{"proxy.example.com", "10.0.0.0/8"}, host: "other.example.com", addr: "10.3.3.3", want: nil},
		{name: "spaces around entries", allow: []string{"  10.0.0.0/8 ", " proxy.example.com"}, host: "proxy.example.com", addr: "203.0.113.1", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.allow, tt.deny, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := l.Check(tt.host, ip(tt.addr))
			if got != tt.want {
				t.Fatalf("Check(%q, %s) = %v, want %v", tt.host, tt.addr, got, tt.want)
			}
			if got == nil {
				return
			}
			var pe *proxystatus.Error
			if !errors.As(got, &pe) || pe.Type != proxystatus.DestinationIPProhibited || pe.Code() != 403 {
				t.Fatalf("Check error %#v is not a 403 destination_ip_prohibited", got)
			}
			if strings.Contains(got.Error(), tt.host) && tt.host != "x" {
				t.Errorf("error %q echoes the host", got)
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	tests := []struct {
		name     string
		allow    []string
		deny     []string
		wantText string // in the error
		hidden   string // never in the error
	}{
		{name: "empty", allow: []string{""}, wantText: "allow entry 1"},
		{name: "blank", deny: []string{"10.0.0.0/8", "  "}, wantText: "deny entry 2"},
		{name: "bad cidr", deny: []string{"10.0.0.0/33"}, wantText: "malformed CIDR"},
		{name: "bad cidr addr", deny: []string{"10.0.0/8"}, wantText: "malformed CIDR"},
		{name: "v6 cidr too long", deny: []string{"2001:db8::/129"}, wantText: "malformed CIDR"},
		{name: "cidr with zone", deny: []string{"fe80::%eth0/64"}, wantText: "malformed CIDR"},
		{name: "ip with zone", deny: []string{"fe80::1%eth0"}, wantText: "zone"},
		{name: "bad ip-like", deny: []string{"300.1.1.1"}, wantText: "deny entry 1"},
		{name: "host with port", allow: []string{"proxy.example.com:3128"}, wantText: "port"},
		{name: "ipv4 with port", allow: []string{"10.0.0.1:3128"}, wantText: "port"},
		{name: "bracketed v6", allow: []string{"[2001:db8::1]"}, wantText: "brackets"},
		{name: "url", allow: []string{"http://proxy.example.com"}, wantText: "scheme"},
		{name: "credentials not echoed", allow: []string{"user:hunter2@proxy.example.com"}, wantText: "allow entry 1: user info", hidden: "hunter2"},
		{name: "credentials in url not echoed", allow: []string{"http://user:hunter2@proxy.example.com/"}, wantText: "user info", hidden: "hunter2"},
		{name: "lone star", deny: []string{"*"}, wantText: "deny entry 1"},
		{name: "inner star", deny: []string{"a.*.example.com"}, wantText: "letters"},
		{name: "star without dot", deny: []string{"*example.com"}, wantText: "letters"},
		{name: "bare dot", deny: []string{"."}, wantText: "empty host name"},
		{name: "star dot only", deny: []string{"*."}, wantText: "empty host name"},
		{name: "empty label", deny: []string{"a..example.com"}, wantText: "label"},
		{name: "long label", deny: []string{strings.Repeat("a", 64) + ".com"}, wantText: "label"},
		{name: "long name", deny: []string{strings.Repeat("abcdefghi.", 26) + "com"}, wantText: "253"},
		{name: "space inside", deny: []string{"bad host"}, wantText: "letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.allow, tt.deny, Options{})
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("New error = %v, want ErrInvalidEntry", err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
			if tt.hidden != "" && strings.Contains(err.Error(), tt.hidden) {
				t.Errorf("error %q echoes %q", err, tt.hidden)
			}
		})
	}
}

func TestNewValidKinds(t *testing.T) {
	l, err := New(
		[]string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.1", "2001:db8::1", "proxy.example.com", ".example.org", "*.example.net", "under_score.example", "localhost"},
		nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(l.allow.prefixes); got != 4 {
		t.Errorf("prefixes = %d, want 4", got)
	}
	if got := len(l.allow.hosts); got != 3 {
		t.Errorf("hosts = %d, want 3", got)
	}
	if got := l.allow.suffixes; len(got) != 2 || got[0] != ".example.org" || got[1] != ".example.net" {
		t.Errorf("suffixes = %q", got)
	}
}

func TestIsLinkLocalOrMetadata(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"169.254.0.1", true},
		{"169.254.169.254", true},
		{"169.254.255.255", true},
		{"100.100.100.200", true},
		{"fd00:ec2::254", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"febf:ffff::1", true},
		{"ff02::1", false},     // multicast: refused by Check as unroutable, not here
		{"224.0.0.251", false}, // likewise
		{"::ffff:169.254.169.254", true},
		{"::ffff:100.100.100.200", true},
		{"127.0.0.1", false},
		{"10.0.0.1", false},
		{"169.253.255.255", false},
		{"169.255.0.0", false},
		{"100.100.100.199", false},
		{"100.100.100.201", false},
		{"fd00:ec2::253", false},
		{"fec0::1", false},
		{"::1", false},
		{"8.8.8.8", false},
		{"2001:4860:4860::8888", false},
		{"224.0.1.1", false},
	}
	for _, tt := range tests {
		if got := IsLinkLocalOrMetadata("", netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("IsLinkLocalOrMetadata(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if !IsLinkLocalOrMetadata("metadata.google.internal", netip.Addr{}) {
		t.Error("metadata host name not refused")
	}
	if IsLinkLocalOrMetadata("", netip.Addr{}) {
		t.Error("zero Addr reported link-local")
	}
}

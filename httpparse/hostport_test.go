package httpparse

import (
	"net/netip"
	"testing"
)

func TestSplitHostPort(t *testing.T) {
	tests := []struct {
		in   string
		def  uint16
		host string
		port uint16
		ipv6 bool
		ok   bool
	}{
		{"a:1", 0, "a", 1, false, true},
		{"a", 0, "", 0, false, false},
		{"a", 80, "a", 80, false, true},
		{"[::1]:443", 0, "::1", 443, true, true},
		{"[::1]", 8, "::1", 8, true, true},
		{"1.2.3.4:5", 0, "1.2.3.4", 5, false, true},
		{"", 80, "", 0, false, false},
		{"a:b:1", 80, "", 0, false, false},
	}
	for _, tt := range tests {
		host, port, ipv6, ok := SplitHostPort([]byte(tt.in), tt.def)
		if string(host) != tt.host || port != tt.port || ipv6 != tt.ipv6 || ok != tt.ok {
			t.Errorf("SplitHostPort(%q, %d) = %q %d %v %v", tt.in, tt.def, host, port, ipv6, ok)
		}
	}
}

func TestValidIPv6(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8", "fe80::1:2",
		"::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4", "1::1.2.3.4", "ABCD:ef01::",
		":", ":::", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
		"12345::", "1:2", ":1::", "1::2:", "1:2:3:4:5:6:7", "1.2.3.4", "::1.2.3", "::01.2.3.4",
		"1:2:3:4:5:6:7:1.2.3.4", "::g", "fe80::1%eth0", "", "1:2:3:4:5:6::1.2.3.4", "::1:2:3:4:5:6:1.2.3.4",
	} {
		a, err := netip.ParseAddr(s)
		want := err == nil && a.Is6() && a.Zone() == ""
		if got := validIPv6([]byte(s)); got != want {
			t.Errorf("validIPv6(%q) = %v, netip says %v", s, got, want)
		}
	}
}

func TestValidIPv4(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "255.255.255.255", "1.2.3.4", "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.1.1.1", "1..2.3", "1.2.3.", "", "a.b.c.d", "1.2.3.04", "1.2.3.0"} {
		a, err := netip.ParseAddr(s)
		want := err == nil && a.Is4()
		if got := validIPv4([]byte(s)); got != want {
			t.Errorf("validIPv4(%q) = %v, netip says %v", s, got, want)
		}
	}
}

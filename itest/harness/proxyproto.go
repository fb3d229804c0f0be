package harness

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// ProxyV1 is a PROXY protocol v1 header ("PROXY TCP4 ...\r\n") naming src
// ("ip:port") as the client and dst as the address it connected to.
func ProxyV1(src, dst string) string {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	fam := "TCP4"
	if s.Addr().Is6() {
		fam = "TCP6"
	}
	return "PROXY " + fam + " " + s.Addr().String() + " " + d.Addr().String() + " " +
		strconv.Itoa(int(s.Port())) + " " + strconv.Itoa(int(d.Port())) + "\r\n"
}

// proxyV2Sig is the 12-byte v2 signature.
const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// ProxyV2 is a PROXY protocol v2 header, command PROXY over TCP, naming
// src as the client and dst as the address it connected to (both IPv4 or
// both IPv6).
func ProxyV2(src, dst string) string {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	b := []byte(proxyV2Sig)
	if s.Addr().Is4() {
		b = append(b, 0x21, 0x11, 0, 12)
		s4, d4 := s.Addr().As4(), d.Addr().As4()
		b = append(append(b, s4[:]...), d4[:]...)
	} else {
		b = append(b, 0x21, 0x21, 0, 36)
		s6, d6 := s.Addr().As16(), d.Addr().As16()
		b = append(append(b, s6[:]...), d6[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, s.Port())
	b = binary.BigEndian.AppendUint16(b, d.Port())
	return string(b)
}

// ProxyV2Local is a PROXY protocol v2 header with command LOCAL (a
// balancer's own health check): the receiver keeps the connection's own
// addresses.
func ProxyV2Local() string { return proxyV2Sig + "\x20\x00\x00\x00" }

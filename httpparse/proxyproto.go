package httpparse

import (
	"errors"
	"net/netip"
)

// PROXY protocol (haproxy.org/download/3.0/doc/proxy-protocol.txt): a load
// balancer in front of proxyto prepends one header to each connection that
// names the client it accepted. Version 1 is a text line, version 2 a binary
// block; a peer trusted to send one may send either.

// Limits on a PROXY protocol header.
const (
	// MaxProxyV1Len is the longest v1 line, CRLF included: the protocol's
	// own worst case ("PROXY UNKNOWN" and two full IPv6 addresses and
	// ports). 107 bytes without a CRLF is ErrProxyHeaderTooLong.
	MaxProxyV1Len = 107
	// MaxProxyV2Payload is the largest v2 length field accepted: the address
	// block plus TLVs after the 16-byte fixed part. TLVs real balancers send
	// (AWS VPC endpoint IDs, Azure link IDs, TLS details, a client
	// certificate's CN) fit in far less; the protocol allows 65535.
	MaxProxyV2Payload = 4096
	// MaxProxyHeaderLen is the most bytes a header accepted by
	// ProxyHeader.Parse can span: what a caller must be ready to buffer.
	MaxProxyHeaderLen = 16 + MaxProxyV2Payload
)

// Errors returned by ProxyHeader.Parse (besides ErrNeedMore). From a peer
// that must send a PROXY header, each means: close the connection. None
// holds bytes of the input.
var (
	// ErrProxyHeaderMissing occurs when the first bytes are neither the v1
	// signature "PROXY " nor the 12-byte v2 signature.
	ErrProxyHeaderMissing = errors.New("proxyto: no PROXY protocol header")

	// ErrProxyHeaderTooLong occurs when a v1 line has no CRLF within
	// MaxProxyV1Len bytes, or a v2 length field exceeds MaxProxyV2Payload.
	ErrProxyHeaderTooLong = errors.New("proxyto: PROXY protocol header too long")

	// ErrProxyHeaderMalformed occurs when a header starts with a signature
	// but does not follow the protocol: for v1 an unknown protocol token, a
	// missing or extra field, an address that is not of the named family, a
	// port outside 0-65535 or with a leading zero, a byte outside printable
	// ASCII, a CR not followed by LF; for v2 a version other than 2, a
	// command other than LOCAL or PROXY, an undefined address family or
	// transport byte, a PROXY length shorter than its family's address
	// block.
	ErrProxyHeaderMalformed = errors.New("proxyto: malformed PROXY protocol header")
)

// ProxyFamily is the address family and transport a PROXY header names.
type ProxyFamily uint8

// The families of the protocol. v1 knows only ProxyTCP4, ProxyTCP6 and
// (for UNKNOWN) ProxyUnspec.
const (
	ProxyUnspec     ProxyFamily = iota // v1 UNKNOWN, v2 AF_UNSPEC
	ProxyTCP4                          // TCP over IPv4
	ProxyUDP4                          // UDP over IPv4 (v2 only)
	ProxyTCP6                          // TCP over IPv6
	ProxyUDP6                          // UDP over IPv6 (v2 only)
	ProxyUnixStream                    // AF_UNIX stream (v2 only)
	ProxyUnixDgram                     // AF_UNIX datagram (v2 only)
)

// ProxyHeader is a parsed PROXY protocol header. The zero value is ready to
// use; Parse resets it. Not safe for concurrent use.
type ProxyHeader struct {
	Version uint8       // 1 or 2
	Family  ProxyFamily // address family and transport
	// Local is set for a v2 LOCAL command: the balancer's own connection
	// (a health check). Source and Destination are not set.
	Local bool
	// Unknown is set when the header carries no IP address to use: v1
	// UNKNOWN, or a v2 PROXY command with family AF_UNSPEC or AF_UNIX.
	// Source and Destination are not set.
	Unknown bool
	// Source is the client the balancer accepted and Destination the
	// address it accepted on, both unmapped (an IPv4-mapped IPv6 address
	// comes back as IPv4) because per-IP accounting keys on them. Valid
	// only when neither Local nor Unknown is set.
	Source, Destination netip.AddrPort
	// Len is the header's length in bytes, what Parse returned.
	Len int
}

// Client returns the address to treat as the client's: Source when the
// header carries one, otherwise peer, the connection's own remote address
// (v2 LOCAL, v1 UNKNOWN, AF_UNSPEC, AF_UNIX).
func (h *ProxyHeader) Client(peer netip.AddrPort) netip.AddrPort {
	if h.Local || h.Unknown {
		return peer
	}
	return h.Source
}

// v1Sig and v2Sig are the two signatures a header starts with.
const (
	v1Sig = "PROXY "
	v2Sig = "\r\n\r\n\x00\r\nQUIT\n"
)

// HasProxySignature reports whether buf starts with a complete v1 or v2
// signature. A peer not trusted to send a PROXY header that sends one
// anyway is refused with a message saying so rather than a generic 400.
func HasProxySignature(buf []byte) bool {
	return len(buf) >= len(v1Sig) && string(buf[:len(v1Sig)]) == v1Sig ||
		len(buf) >= len(v2Sig) && string(buf[:len(v2Sig)]) == v2Sig
}

// Parse parses the PROXY protocol header at the start of buf and returns its
// length: buf[n:] is the first byte the client sent. It returns ErrNeedMore
// while the header is incomplete, and another error as soon as the bytes
// seen cannot start a valid header. TLVs are skipped. It never allocates.
func (h *ProxyHeader) Parse(buf []byte) (n int, err error) {
	*h = ProxyHeader{}
	if len(buf) == 0 {
		return 0, ErrNeedMore
	}
	switch buf[0] {
	case v1Sig[0]:
		n, err = h.parseV1(buf)
	case v2Sig[0]:
		n, err = h.parseV2(buf)
	default:
		return 0, ErrProxyHeaderMissing
	}
	if err != nil {
		*h = ProxyHeader{}
		return 0, err
	}
	h.Len = n
	return n, nil
}

// signature checks the part of sig that buf holds.
func signature(buf []byte, sig string) error {
	m := min(len(buf), len(sig))
	if string(buf[:m]) != sig[:m] {
		return ErrProxyHeaderMissing
	}
	if m < len(sig) {
		return ErrNeedMore
	}
	return nil
}

// parseV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or
// "PROXY UNKNOWN[ anything]\r\n".
func (h *ProxyHeader) parseV1(buf []byte) (int, error) {
	if err := signature(buf, v1Sig); err != nil {
		return 0, err
	}
	h.Version = 1
	// Find the LF, checking every byte before it: printable ASCII, and a
	// CR only right before the LF.
	end := -1
	for i := len(v1Sig); i < len(buf) && i < MaxProxyV1Len; i++ {
		c := buf[i]
		if c == '\n' {
			if buf[i-1] != '\r' {
				return 0, ErrProxyHeaderMalformed
			}
			end = i - 1
			break
		}
		if c == '\r' {
			if i+1 < len(buf) && buf[i+1] != '\n' {
				return 0, ErrProxyHeaderMalformed
			}
			continue
		}
		if c < 0x20 || c > 0x7e {
			return 0, ErrProxyHeaderMalformed
		}
	}
	if end < 0 {
		if len(buf) >= MaxProxyV1Len {
			return 0, ErrProxyHeaderTooLong
		}
		return 0, ErrNeedMore
	}
	n := end + 2
	line := buf[len(v1Sig):end]

	proto, line := v1Field(line)
	switch string(proto) {
	case "UNKNOWN":
		// The receiver ignores whatever follows (the protocol's words).
		h.Family, h.Unknown = ProxyUnspec, true
		return n, nil
	case "TCP4":
		h.Family = ProxyTCP4
	case "TCP6":
		h.Family = ProxyTCP6
	default:
		return 0, ErrProxyHeaderMalformed
	}
	var f [4][]byte
	for k := range f {
		if len(line) == 0 || line[0] != ' ' {
			return 0, ErrProxyHeaderMalformed
		}
		f[k], line = v1Field(line[1:])
	}
	if len(line) != 0 {
		return 0, ErrProxyHeaderMalformed
	}
	src, ok1 := v1Addr(f[0], h.Family)
	dst, ok2 := v1Addr(f[1], h.Family)
	sport, ok3 := v1Port(f[2])
	dport, ok4 := v1Port(f[3])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return 0, ErrProxyHeaderMalformed
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Destination = netip.AddrPortFrom(dst, dport)
	return n, nil
}

// v1Field splits b at its first space: the field before, and the rest from
// the space on.
func v1Field(b []byte) (field, rest []byte) {
	for i, c := range b {
		if c == ' ' {
			return b[:i], b[i:]
		}
	}
	return b, nil
}

// v1Addr parses an address of the family the line names. A TCP6 line may
// carry a dotted-quad IPv4 address: the protocol forbids it, but NGINX's
// stream module has been seen to send one, and its meaning is plain.
func v1Addr(b []byte, fam ProxyFamily) (netip.Addr, bool) {
	if v4, ok := parseIPv4(b); ok {
		return netip.AddrFrom4(v4), true
	}
	if fam != ProxyTCP6 {
		return netip.Addr{}, false
	}
	v6, ok := parseIPv6(b)
	return netip.AddrFrom16(v6).Unmap(), ok
}

// v1Port parses 0-65535 in decimal without a leading zero.
func v1Port(b []byte) (uint16, bool) {
	n, ok := parseDigits5(b)
	if !ok || n > 65535 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	return uint16(n), true
}

// v2Families maps a v2 family-and-transport byte to its family and the
// length of its address block; undefined bytes are absent (ok false).
var v2Families = [256]struct {
	fam   ProxyFamily
	block int
	ok    bool
}{
	0x00: {ProxyUnspec, 0, true},
	0x11: {ProxyTCP4, 12, true},
	0x12: {ProxyUDP4, 12, true},
	0x21: {ProxyTCP6, 36, true},
	0x22: {ProxyUDP6, 36, true},
	0x31: {ProxyUnixStream, 216, true},
	0x32: {ProxyUnixDgram, 216, true},
}

// v2 commands (low nibble of byte 13; the high nibble is the version, 2).
const (
	v2Local = 0x0
	v2Proxy = 0x1
)

// parseV2 parses the binary header: signature, version and command, family
// and transport, a big-endian length, then the address block and TLVs.
func (h *ProxyHeader) parseV2(buf []byte) (int, error) {
	if err := signature(buf, v2Sig); err != nil {
		return 0, err
	}
	h.Version = 2
	if len(buf) < 13 {
		return 0, ErrNeedMore
	}
	verCmd := buf[12]
	if verCmd>>4 != 2 || verCmd&0xf != v2Local && verCmd&0xf != v2Proxy {
		return 0, ErrProxyHeaderMalformed
	}
	if len(buf) < 14 {
		return 0, ErrNeedMore
	}
	f := v2Families[buf[13]]
	if !f.ok {
		// The protocol says reject undefined bytes, LOCAL included.
		return 0, ErrProxyHeaderMalformed
	}
	if len(buf) < 16 {
		return 0, ErrNeedMore
	}
	length := int(be16(buf[14:16]))
	if length > MaxProxyV2Payload {
		return 0, ErrProxyHeaderTooLong
	}
	local := verCmd&0xf == v2Local
	if !local && length < f.block {
		return 0, ErrProxyHeaderMalformed
	}
	n := 16 + length
	if len(buf) < n {
		return 0, ErrNeedMore
	}
	h.Family = f.fam
	switch {
	case local:
		// Whatever the block holds describes the balancer's own
		// connection; the receiver uses the real endpoints.
		h.Local = true
	case f.block == 12:
		b := buf[16:]
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[0:4])), be16(b[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), be16(b[10:12]))
	case f.block == 36:
		b := buf[16:]
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[0:16])).Unmap(), be16(b[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[16:32])).Unmap(), be16(b[34:36]))
	default:
		// AF_UNSPEC (the receiver may accept it and use the real
		// endpoints, which proxyto does) and AF_UNIX: no IP address.
		h.Unknown = true
	}
	return n, nil
}

// be16 reads a big-endian uint16 from b[0:2].
func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

package httpparse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// v2 builds a v2 header: signature, version/command byte, family byte, then
// body (address block and TLVs) with its length.
func v2(verCmd, fam byte, body ...byte) []byte {
	b := append([]byte(v2Sig), verCmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

// v2Block4 is the TCP4 address block 192.0.2.1:51000 → 198.51.100.2:443.
var v2Block4 = []byte{192, 0, 2, 1, 198, 51, 100, 2, 0xc7, 0x38, 0x01, 0xbb}

// v2Block6 is the TCP6 block [2001:db8::1]:51000 → [2001:db8::2]:443.
var v2Block6 = func() []byte {
	s := netip.MustParseAddr("2001:db8::1").As16()
	d := netip.MustParseAddr("2001:db8::2").As16()
	return append(append(s[:], d[:]...), 0xc7, 0x38, 0x01, 0xbb)
}()

func TestProxyHeaderParse(t *testing.T) {
	const after = "GET / HTTP/1.1\r\n\r\n"
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'} // PP2_TYPE_NOOP, skipped
	unixBlock := make([]byte, 216)
	tests := []struct {
		name    string
		in      []byte
		err     error
		version uint8
		family  ProxyFamily
		local   bool
		unknown bool
		src     string
		dst     string
	}{
		{name: "v1 tcp4", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"),
			version: 1, family: ProxyTCP4, src: "192.0.2.1:51000", dst: "198.51.100.2:443"},
		{name: "v1 tcp6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n"),
			version: 1, family: ProxyTCP6, src: "[2001:db8::1]:51000", dst: "[2001:db8::2]:443"},
		{name: "v1 tcp6 mapped is unmapped", in: []byte("PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 1 2\r\n"),
			version: 1, family: ProxyTCP6, src: "192.0.2.1:1", dst: "198.51.100.2:2"},
		{name: "v1 tcp6 carrying ipv4 (nginx)", in: []byte("PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n"),
			version: 1, family: ProxyTCP6, src: "192.0.2.1:1", dst: "198.51.100.2:2"},
		{name: "v1 port 0 and 65535", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n"),
			version: 1, family: ProxyTCP4, src: "1.2.3.4:0", dst: "5.6.7.8:65535"},
		{name: "v1 unknown short", in: []byte("PROXY UNKNOWN\r\n"), version: 1, unknown: true},
		{name: "v1 unknown long", in: []byte("PROXY UNKNOWN ffff:f:ffff ffff::ffff 65535 65535\r\n"), version: 1, unknown: true},
		{name: "v1 worst case 107 bytes", in: []byte("PROXY UNKNOWN " + strings.Repeat("f", 91) + "\r\n"), version: 1, unknown: true},

		{name: "v1 108 bytes", in: []byte("PROXY UNKNOWN " + strings.Repeat("f", 92) + "\r\n"), err: ErrProxyHeaderTooLong},
		{name: "v1 107 bytes without LF", in: []byte("PROXY UNKNOWN " + strings.Repeat("f", 93)), err: ErrProxyHeaderTooLong},
		{name: "v1 partial", in: []byte("PROXY TCP4 1.2.3.4 "), err: ErrNeedMore},
		{name: "v1 partial signature", in: []byte("PROX"), err: ErrNeedMore},
		{name: "v1 CR pending", in: []byte("PROXY UNKNOWN\r"), err: ErrNeedMore},
		{name: "v1 bare LF", in: []byte("PROXY UNKNOWN\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 CR without LF", in: []byte("PROXY UNKNOWN\rx"), err: ErrProxyHeaderMalformed},
		{name: "v1 control byte seen early", in: []byte("PROXY TCP4 1.2\x00"), err: ErrProxyHeaderMalformed},
		{name: "v1 bad protocol", in: []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 lower-case protocol", in: []byte("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 double space", in: []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 missing port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 extra field", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 trailing space", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 ipv6 in tcp4", in: []byte("PROXY TCP4 ::1 ::2 1 2\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 leading-zero octet", in: []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 port too big", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 port leading zero", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 zone", in: []byte("PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n"), err: ErrProxyHeaderMalformed},
		{name: "v1 no space after PROXY", in: []byte("PROXYTCP4"), err: ErrProxyHeaderMissing},

		{name: "v2 tcp4", in: v2(0x21, 0x11, v2Block4...),
			version: 2, family: ProxyTCP4, src: "192.0.2.1:51000", dst: "198.51.100.2:443"},
		{name: "v2 tcp4 with TLV", in: v2(0x21, 0x11, append(append([]byte{}, v2Block4...), tlv...)...),
			version: 2, family: ProxyTCP4, src: "192.0.2.1:51000", dst: "198.51.100.2:443"},
		{name: "v2 udp4", in: v2(0x21, 0x12, v2Block4...),
			version: 2, family: ProxyUDP4, src: "192.0.2.1:51000", dst: "198.51.100.2:443"},
		{name: "v2 tcp6", in: v2(0x21, 0x21, v2Block6...),
			version: 2, family: ProxyTCP6, src: "[2001:db8::1]:51000", dst: "[2001:db8::2]:443"},
		{name: "v2 local, no block", in: v2(0x20, 0x00), version: 2, local: true},
		{name: "v2 local, tcp4 block ignored", in: v2(0x20, 0x11, v2Block4...), version: 2, family: ProxyTCP4, local: true},
		{name: "v2 local, short block", in: v2(0x20, 0x11, 1, 2, 3), version: 2, family: ProxyTCP4, local: true},
		{name: "v2 proxy unspec", in: v2(0x21, 0x00, tlv...), version: 2, unknown: true},
		{name: "v2 proxy unix", in: v2(0x21, 0x31, unixBlock...), version: 2, family: ProxyUnixStream, unknown: true},

		{name: "v2 partial signature", in: []byte(v2Sig[:7]), err: ErrNeedMore},
		{name: "v2 partial fixed part", in: v2(0x21, 0x11, v2Block4...)[:15], err: ErrNeedMore},
		{name: "v2 partial block", in: v2(0x21, 0x11, v2Block4...)[:20], err: ErrNeedMore},
		{name: "v2 wrong signature", in: []byte("\r\n\r\n\x00\r\nQUIX\n"), err: ErrProxyHeaderMissing},
		{name: "v2 version 1", in: v2(0x11, 0x11, v2Block4...), err: ErrProxyHeaderMalformed},
		{name: "v2 command 2", in: v2(0x22, 0x11, v2Block4...), err: ErrProxyHeaderMalformed},
		{name: "v2 bad command seen early", in: v2(0x2f, 0x11)[:13], err: ErrProxyHeaderMalformed},
		{name: "v2 undefined family", in: v2(0x21, 0x13, v2Block4...), err: ErrProxyHeaderMalformed},
		{name: "v2 local with undefined family", in: v2(0x20, 0x41), err: ErrProxyHeaderMalformed},
		{name: "v2 block too short", in: v2(0x21, 0x21, v2Block4...), err: ErrProxyHeaderMalformed},
		{name: "v2 length over the limit", in: v2(0x21, 0x11, make([]byte, MaxProxyV2Payload+1)...), err: ErrProxyHeaderTooLong},
		{name: "v2 length over the limit seen early", in: append([]byte(v2Sig), 0x21, 0x11, 0xff, 0xff), err: ErrProxyHeaderTooLong},

		{name: "empty", in: nil, err: ErrNeedMore},
		{name: "plain request", in: []byte("GET / HTTP/1.1\r\n"), err: ErrProxyHeaderMissing},
		{name: "TLS ClientHello", in: []byte{0x16, 0x03, 0x01, 0x02, 0x00}, err: ErrProxyHeaderMissing},
		{name: "CRLF then request", in: []byte("\r\nGET / HTTP/1.1\r\n"), err: ErrProxyHeaderMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h ProxyHeader
			n, err := h.Parse(append(append([]byte{}, tt.in...), after...))
			if tt.err == ErrNeedMore {
				n, err = h.Parse(tt.in) // nothing after a partial header
			}
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				if n != 0 || h != (ProxyHeader{}) {
					t.Fatalf("on error: n = %d, header %+v", n, h)
				}
				return
			}
			if n != len(tt.in) || h.Len != n {
				t.Errorf("n = %d, Len = %d, want %d", n, h.Len, len(tt.in))
			}
			if h.Version != tt.version || h.Family != tt.family || h.Local != tt.local || h.Unknown != tt.unknown {
				t.Errorf("got %+v", h)
			}
			peer := netip.MustParseAddrPort("10.0.0.9:40000")
			if tt.src == "" {
				if h.Source.IsValid() || h.Destination.IsValid() || h.Client(peer) != peer {
					t.Errorf("addresses set without one to use: %+v", h)
				}
				return
			}
			if h.Source.String() != tt.src || h.Destination.String() != tt.dst {
				t.Errorf("src %v dst %v, want %s %s", h.Source, h.Destination, tt.src, tt.dst)
			}
			if h.Client(peer) != h.Source {
				t.Errorf("Client = %v, want the source", h.Client(peer))
			}
		})
	}
}

// TestProxyHeaderPrefixes checks that every strict prefix of a valid header
// asks for more bytes: the engine must never refuse a header that arrives
// in pieces.
func TestProxyHeaderPrefixes(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		v2(0x21, 0x21, v2Block6...),
		v2(0x20, 0x00),
	} {
		var h ProxyHeader
		for k := range len(in) {
			if _, err := h.Parse(in[:k]); err != ErrNeedMore {
				t.Errorf("%q[:%d]: %v, want ErrNeedMore", in, k, err)
			}
		}
	}
}

func TestHasProxySignature(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", true},
		{"PROXY ", true},
		{"PROXY", false},
		{v2Sig, true},
		{v2Sig[:11], false},
		{"GET / HTTP/1.1\r\n", false},
		{"", false},
	} {
		if got := HasProxySignature([]byte(c.in)); got != c.want {
			t.Errorf("HasProxySignature(%q) = %v", c.in, got)
		}
	}
}

func TestParseIPMatchesNetip(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8", "fe80::1:2",
		"::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4", "1::1.2.3.4", "ABCD:ef01::", "1:0:0:2::3",
		"0.0.0.0", "255.255.255.255", "1.2.3.4",
	} {
		checkParseIP(t, []byte(s))
	}
}

// checkParseIP holds parseIPv4 and parseIPv6 to net/netip on s.
func checkParseIP(t *testing.T, s []byte) {
	t.Helper()
	want, err := netip.ParseAddr(string(s))
	if err != nil || want.Zone() != "" {
		want = netip.Addr{}
	}
	if v4, ok := parseIPv4(s); ok != want.Is4() || ok && netip.AddrFrom4(v4) != want {
		t.Errorf("parseIPv4(%q) = %v %v, netip says %v", s, v4, ok, want)
	}
	if v6, ok := parseIPv6(s); ok != want.Is6() || ok && netip.AddrFrom16(v6) != want {
		t.Errorf("parseIPv6(%q) = %v %v, netip says %v", s, v6, ok, want)
	}
}

func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"::", "1::", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "1.2.3.4", "01.2.3.4", "1:2:3:4:5:6::1.2.3.4"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) { checkParseIP(t, s) })
}

var proxySeeds = [][]byte{
	[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\nGET / HTTP/1.1\r\n\r\n"),
	[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n"),
	[]byte("PROXY TCP6 ::ffff:1.2.3.4 ::2 1 2\r\n"),
	[]byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
	[]byte("PROXY UNKNOWN\r\n"),
	[]byte("PROXY UNKNOWN 1 2 3\r\n"),
	[]byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 1\r\n"),
	v2(0x21, 0x11, v2Block4...),
	v2(0x21, 0x21, v2Block6...),
	v2(0x20, 0x00),
	v2(0x20, 0x11, 1, 2),
	v2(0x21, 0x31, make([]byte, 216)...),
	v2(0x21, 0x00),
	v2(0x21, 0x11, append(append([]byte{}, v2Block4...), 0x04, 0, 1, 'x')...),
}

// FuzzProxyHeader compares ProxyHeader.Parse with github.com/pires/go-proxyproto
// (V1AcceptIPv4InTCP6 on, as proxyto accepts that too).
//
// Intended differences (proxyto lenient):
//   - a v2 PROXY command with family AF_UNSPEC is accepted as Unknown (the
//     protocol lets the receiver accept it with the real endpoints);
//     go-proxyproto rejects it.
//
// Intended differences (proxyto stricter):
//   - a v1 UNKNOWN line holding bytes other than printable ASCII is refused;
//     go-proxyproto ignores anything up to the CRLF.
//
// Both must agree on success, on the header length, and on the addresses.
// Every strict prefix of a header proxyto accepts must ask for more bytes.
func FuzzProxyHeader(f *testing.F) {
	proxyproto.V1AcceptIPv4InTCP6 = true
	for _, s := range proxySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8192 {
			return // beyond go-proxyproto's single buffered read
		}
		var h ProxyHeader
		n, err := h.Parse(data)

		br := bytes.NewReader(data)
		r := bufio.NewReaderSize(br, 16384)
		ph, perr := proxyproto.Read(r)
		pn := len(data) - r.Buffered() - br.Len()

		switch {
		case err == ErrNeedMore:
			if perr == nil {
				t.Fatalf("proxyto wants more bytes, go-proxyproto parsed %d: %+v", pn, ph)
			}
			return
		case err != nil && perr != nil:
			return
		case err != nil:
			if errors.Is(err, ErrProxyHeaderMalformed) && ph.Version == 1 && ph.TransportProtocol == proxyproto.UNSPEC {
				return // non-printable bytes in an UNKNOWN line
			}
			t.Fatalf("proxyto: %v; go-proxyproto parsed %d: %+v", err, pn, ph)
		case perr != nil:
			if h.Version == 2 && !h.Local && h.Unknown && h.Family == ProxyUnspec {
				return // v2 PROXY over AF_UNSPEC
			}
			t.Fatalf("proxyto parsed %d: %+v; go-proxyproto: %v", n, h, perr)
		}

		if n != pn || h.Version != ph.Version {
			t.Fatalf("length/version %d/%d, go-proxyproto %d/%d", n, h.Version, pn, ph.Version)
		}
		if h.Local != (ph.Command == proxyproto.LOCAL && ph.Version == 2) {
			t.Fatalf("Local %v, go-proxyproto command %v", h.Local, ph.Command)
		}
		if h.Local || h.Unknown {
			if !h.Local && !ph.TransportProtocol.IsUnix() && ph.TransportProtocol != proxyproto.UNSPEC {
				t.Fatalf("Unknown, go-proxyproto family %v", ph.TransportProtocol)
			}
		} else {
			if got, want := h.Source, piresAddrPort(ph.SourceAddr); got != want {
				t.Fatalf("source %v, go-proxyproto %v", got, want)
			}
			if got, want := h.Destination, piresAddrPort(ph.DestinationAddr); got != want {
				t.Fatalf("destination %v, go-proxyproto %v", got, want)
			}
		}
		for _, k := range []int{0, 1, 5, 6, 12, 13, 14, 15, 16, n / 2, n - 1} {
			if k >= 0 && k < n {
				if _, err := h.Parse(data[:k]); err != ErrNeedMore {
					t.Fatalf("prefix [:%d] of an accepted header: %v", k, err)
				}
			}
		}
	})
}

// piresAddrPort converts go-proxyproto's address to proxyto's form.
func piresAddrPort(a net.Addr) netip.AddrPort {
	var ip net.IP
	var port int
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, port = v.IP, v.Port
	case *net.UDPAddr:
		ip, port = v.IP, v.Port
	default:
		return netip.AddrPort{}
	}
	ad, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(ad.Unmap(), uint16(port))
}

func TestParseProxyPeers(t *testing.T) {
	p, err := ParseProxyPeers([]string{"10.0.0.0/8", " 192.0.2.7 ", "", "2001:db8::/32", "::ffff:172.16.0.0/108", "10.1.2.3/8"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "10.0.0.0/8,192.0.2.7/32,2001:db8::/32,172.16.0.0/12,10.0.0.0/8"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"::ffff:10.1.2.3", true},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"2001:db8::1", true},
		{"2001:db9::1", false},
		{"172.31.255.255", true},
		{"172.32.0.0", false},
		{"11.0.0.0", false},
	} {
		if got := p.Contains(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("Contains(%s) = %v", c.addr, got)
		}
	}
	var empty ProxyPeers
	if !empty.Empty() || empty.Contains(netip.MustParseAddr("10.0.0.1")) || p.Empty() {
		t.Error("Empty/Contains on the zero value")
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/8/8", "fe80::1%eth0", "::ffff:0:0/95", "1.2.3"} {
		_, err := ParseProxyPeers([]string{"10.0.0.0/8", bad})
		if !errors.Is(err, ErrProxyPeer) || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseProxyPeers(%q) = %v, want ErrProxyPeer naming it", bad, err)
		}
	}
}

func BenchmarkProxyHeaderParse(b *testing.B) {
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"v1-tcp4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n")},
		{"v1-tcp6", []byte("PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::2 51000 443\r\n")},
		{"v2-tcp4", v2(0x21, 0x11, v2Block4...)},
		{"v2-tcp6-tlv", v2(0x21, 0x21, append(append([]byte{}, v2Block6...), 0xea, 0, 5, 'v', 'p', 'c', 'e', '1')...)},
	} {
		b.Run(c.name, func(b *testing.B) {
			var h ProxyHeader
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.Parse(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkProxyPeersContains(b *testing.B) {
	p, _ := ParseProxyPeers([]string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "2001:db8::/32"})
	a := netip.MustParseAddr("::ffff:192.168.7.9")
	b.ReportAllocs()
	for b.Loop() {
		if !p.Contains(a) {
			b.Fatal("not contained")
		}
	}
}

package engine_test

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/httpparse"
)

// proxyV1 is a PROXY protocol v1 header naming src as the client.
func proxyV1(src string) string {
	ap := netip.MustParseAddrPort(src)
	fam := "TCP4"
	dst := "127.0.0.1"
	if ap.Addr().Is6() {
		fam, dst = "TCP6", "::1"
	}
	return "PROXY " + fam + " " + ap.Addr().String() + " " + dst + " " + itoa(int(ap.Port())) + " 8080\r\n"
}

// proxyV2 is a PROXY protocol v2 header: command PROXY naming src, or LOCAL
// when src is "".
func proxyV2(src string) string {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	if src == "" {
		return string(append(b, 0x20, 0x00, 0, 0))
	}
	ap := netip.MustParseAddrPort(src)
	if ap.Addr().Is4() {
		b = append(b, 0x21, 0x11, 0, 12)
		s, d := ap.Addr().As4(), [4]byte{127, 0, 0, 1}
		b = append(append(b, s[:]...), d[:]...)
	} else {
		b = append(b, 0x21, 0x21, 0, 36)
		s, d := ap.Addr().As16(), netip.IPv6Loopback().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	b = binary.BigEndian.AppendUint16(b, 8080)
	return string(b)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func trustLoopback(t *testing.T) httpparse.ProxyPeers {
	t.Helper()
	p, err := httpparse.ParseProxyPeers([]string{"127.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInprocProxyProtocol: from a trusted peer, the header's address is the
// client's in the access record (v1, v2, IPv4, IPv6, split across writes),
// LOCAL and UNKNOWN keep the peer's; a request forwarded after the header
// reaches the origin.
func TestInprocProxyProtocol(t *testing.T) {
	origin := startOrigin(t)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{ProxyPeers: trustLoopback(t)})
	tests := []struct {
		name   string
		header string
		split  int    // write the first split bytes alone first (0: all at once)
		want   string // client address in the record; "" = the peer's
	}{
		{"v1 IPv4", proxyV1("203.0.113.7:4711"), 0, "203.0.113.7:4711"},
		{"v1 IPv6", proxyV1("[2001:db8::5]:443"), 0, "[2001:db8::5]:443"},
		{"v1 split", proxyV1("198.51.100.1:1000"), 9, "198.51.100.1:1000"},
		{"v1 UNKNOWN", "PROXY UNKNOWN\r\n", 0, ""},
		{"v2 IPv4", proxyV2("192.0.2.9:5000"), 0, "192.0.2.9:5000"},
		{"v2 IPv6 split in the signature", proxyV2("[2001:db8::9]:6000"), 5, "[2001:db8::9]:6000"},
		{"v2 LOCAL", proxyV2(""), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te.rec.with(func(s *obsStats) { *s = obsStats{} })
			c := dialClient(t, te.addr)
			msg := tt.header + get(originHost(origin), "/echo", up.addr)
			if tt.split > 0 {
				c.write(msg[:tt.split])
				time.Sleep(20 * time.Millisecond) // let the engine see the part alone
				msg = msg[tt.split:]
			}
			r := c.roundTrip("GET", msg)
			if r.StatusCode != 200 {
				t.Fatalf("status %d, body %q", r.StatusCode, r.body)
			}
			want := tt.want
			if want == "" {
				want = c.c.LocalAddr().String()
			}
			eventually(t, "the access record", func() bool { return len(te.rec.snapshot().records) > 0 })
			s := te.rec.snapshot()
			if len(s.records) != 1 || s.records[0].client.String() != want {
				t.Fatalf("records %+v, want one from %s", s.records, want)
			}
			if s.proxyFailures != [engine.NumProxyFailures]int{} {
				t.Errorf("failures counted: %v", s.proxyFailures)
			}
		})
	}
}

// TestInprocProxyProtocolRefused: a trusted peer's connection without a
// valid header is closed without an answer and counted by reason; from an
// untrusted peer, a PROXY header is a 400 that says so.
func TestInprocProxyProtocolRefused(t *testing.T) {
	te := startEngine(t, engine.Config{ProxyPeers: trustLoopback(t), ClientHeaderTimeout: time.Second})
	tests := []struct {
		name  string
		send  string
		close bool // the client closes after sending
		want  engine.ProxyFailure
	}{
		{"plain request", get("example.com", "/", "127.0.0.1:1"), false, engine.ProxyMissing},
		{"v1 bad family", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", false, engine.ProxyMalformed},
		{"v1 without CRLF", "PROXY TCP4 " + strings.Repeat("1", 120), false, engine.ProxyTooLong},
		{"v2 too long", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", false, engine.ProxyTooLong},
		{"nothing in time", "", false, engine.ProxyTimeout},
		{"half a header in time", "PROXY TCP4 1.2", false, engine.ProxyTimeout},
		{"half a header, then closed", "PROXY TCP4 1.2", true, engine.ProxyIncomplete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te.rec.with(func(s *obsStats) { *s = obsStats{} })
			c := dialClient(t, te.addr)
			if tt.send != "" {
				c.write(tt.send)
			}
			if tt.close {
				time.Sleep(50 * time.Millisecond)
				_ = c.c.Close()
			} else {
				c.expectClosed(tt.name)
			}
			eventually(t, "the failure counted", func() bool { return te.rec.snapshot().proxyFailures[tt.want] == 1 })
			s := te.rec.settled(t)
			if n := sum(s.proxyFailures[:]); n != 1 || len(s.records) != 0 {
				t.Errorf("%d failures counted (%v), %d records; want one failure, no record", n, s.proxyFailures, len(s.records))
			}
		})
	}

	t.Run("untrusted peer", func(t *testing.T) {
		peers, _ := httpparse.ParseProxyPeers([]string{"10.0.0.0/8"})
		te := startEngine(t, engine.Config{ProxyPeers: peers})
		for _, h := range []string{proxyV1("203.0.113.7:4711"), proxyV2("192.0.2.9:5000")} {
			c := dialClient(t, te.addr)
			r := c.roundTrip("GET", h+get("example.com", "/", "127.0.0.1:1"))
			checkProxyError(t, r, 400, "http_request_error")
			if !strings.Contains(r.Header.Get("Proxy-Status"), "PROXY protocol header from a peer not trusted") {
				t.Errorf("Proxy-Status %q does not name the untrusted PROXY header", r.Header.Get("Proxy-Status"))
			}
		}
	})
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestInprocProxyProtocolLimits: per-IP limits count the client the header
// names: with one connection per IP, two clients behind one balancer are
// both admitted, and a second connection of the same client is refused
// with 429 (after its header). The peer's own address is not counted.
func TestInprocProxyProtocolLimits(t *testing.T) {
	origin := startOrigin(t)
	up := startProxy(t, nil)
	te := startEngine(t, engine.Config{ProxyPeers: trustLoopback(t), MaxConnsPerIP: 1})
	ok := func(c *client, msg string) {
		t.Helper()
		if r := c.roundTrip("GET", msg+get(originHost(origin), "/echo", up.addr)); r.StatusCode != 200 {
			t.Fatalf("status %d, body %q", r.StatusCode, r.body)
		}
	}
	a := dialClient(t, te.addr)
	ok(a, proxyV1("203.0.113.1:1000"))
	b := dialClient(t, te.addr)
	ok(b, proxyV2("203.0.113.2:1000"))
	a2 := dialClient(t, te.addr)
	a2.write(proxyV1("203.0.113.1:2000"))
	checkLimit429(t, a2.mustRead("GET"))
	if n := te.rec.snapshot().limits[engine.LimitConnsPerIP]; n != 1 {
		t.Errorf("LimitRejected(conns_per_ip) %d, want 1", n)
	}
	// The first connections are still open and admitted.
	ok(a, "")
	ok(b, "")
}

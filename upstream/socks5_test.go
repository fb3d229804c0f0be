package upstream_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/upstream"
)

// socksServer is the upstream side of RFC 1928 / RFC 1929, written from the
// RFCs for these tests. Its fields configure the answers; what it received is
// reported in socksSeen.
type socksServer struct {
	method     byte   // method to choose (0x00, 0x02 or 0xFF)
	user, pass string // credentials accepted when method is 0x02
	authStatus byte   // override of the RFC 1929 status (0 = decide by user/pass)
	rep        byte   // REP code of the reply
	bndAtyp    byte   // ATYP of BND.ADDR in the reply (1, 3 or 4)
	bndDomain  string // BND.ADDR when bndAtyp is 3
	after      []byte // bytes sent right after the reply (tunnel data)
	oneByte    bool   // write every answer one byte at a time
	garbage    []byte // if set, answer the greeting with these bytes and stop
	stage      string // if "auth" or "reply", answer that stage with garbage instead
}

type socksSeen struct {
	methods    []byte
	user, pass string
	atyp       byte
	addr       netip.Addr
	domain     string
	port       uint16
	err        error
}

// serve runs one exchange on c and reports what it saw.
func (s *socksServer) serve(c net.Conn) (seen socksSeen) {
	defer func() {
		if seen.err != nil {
			_ = c.Close()
		}
	}()
	write := func(b []byte) error {
		if !s.oneByte {
			_, err := c.Write(b)
			return err
		}
		for i := range b {
			if _, err := c.Write(b[i : i+1]); err != nil {
				return err
			}
		}
		return nil
	}
	read := func(n int) ([]byte, error) {
		b := make([]byte, n)
		_, err := io.ReadFull(c, b)
		return b, err
	}
	hdr, err := read(2)
	if err != nil {
		seen.err = err
		return
	}
	if hdr[0] != 5 {
		seen.err = fmt.Errorf("greeting version %d", hdr[0])
		return
	}
	if seen.methods, seen.err = read(int(hdr[1])); seen.err != nil {
		return
	}
	if s.garbage != nil && s.stage == "" {
		seen.err = write(s.garbage)
		return
	}
	if seen.err = write([]byte{5, s.method}); seen.err != nil || s.method == 0xFF {
		return
	}
	if s.method == 2 {
		h, err := read(2)
		if err != nil || h[0] != 1 {
			seen.err = fmt.Errorf("auth header %v: %v", h, err)
			return
		}
		u, _ := read(int(h[1]))
		pl, _ := read(1)
		p, err := read(int(pl[0]))
		if err != nil {
			seen.err = err
			return
		}
		seen.user, seen.pass = string(u), string(p)
		if s.stage == "auth" {
			seen.err = write(s.garbage)
			return
		}
		status := s.authStatus
		if status == 0 && (seen.user != s.user || seen.pass != s.pass) {
			status = 1
		}
		if seen.err = write([]byte{1, status}); seen.err != nil || status != 0 {
			return
		}
	}
	req, err := read(4)
	if err != nil {
		seen.err = err
		return
	}
	if req[0] != 5 || req[1] != 1 || req[2] != 0 {
		seen.err = fmt.Errorf("request header %v", req)
		return
	}
	seen.atyp = req[3]
	switch req[3] {
	case 1:
		a, _ := read(4)
		seen.addr = netip.AddrFrom4([4]byte(a))
	case 4:
		a, _ := read(16)
		seen.addr = netip.AddrFrom16([16]byte(a))
	case 3:
		l, _ := read(1)
		d, _ := read(int(l[0]))
		seen.domain = string(d)
	default:
		seen.err = fmt.Errorf("request ATYP %d", req[3])
		return
	}
	p, err := read(2)
	if err != nil {
		seen.err = err
		return
	}
	seen.port = binary.BigEndian.Uint16(p)
	if s.stage == "reply" {
		seen.err = write(s.garbage)
		return
	}
	reply := []byte{5, s.rep, 0, s.bndAtyp}
	switch s.bndAtyp {
	case 1:
		reply = append(reply, 10, 1, 2, 3)
	case 4:
		a := netip.MustParseAddr("2001:db8::1").As16()
		reply = append(reply, a[:]...)
	case 3:
		reply = append(reply, byte(len(s.bndDomain)))
		reply = append(reply, s.bndDomain...)
	}
	reply = append(reply, 0x1f, 0x90) // BND.PORT 8080
	reply = append(reply, s.after...)
	seen.err = write(reply)
	return
}

// feed and start call the Handshake methods and return the results the
// way the tests read them.
func feed(f func(in, send, reply []byte) (upstream.Step, error), in, out []byte) (int, []byte, bool, error) {
	st, err := f(in, out, nil)
	return st.N, st.Send, st.Done, err
}

func start(f func(send []byte) ([]byte, bool, error), dst []byte) ([]byte, error) {
	out, _, err := f(dst)
	return out, err
}

// runSocks drives s over c until done or an error, reading readSize bytes at
// a time, as the engine would: Start, then Feed whatever arrived, send what
// Feed returns. It returns the bytes left after the reply (tunnel data).
func runSocks(s *upstream.Socks5, c net.Conn, readSize int) (rest []byte, err error) {
	out, err := start(s.Start, nil)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(out); err != nil {
		return nil, err
	}
	var in []byte
	buf := make([]byte, readSize)
	for {
		// Feed everything buffered before reading more.
		for len(in) > 0 {
			n, next, done, err := feed(s.Feed, in, out[:0])
			if err != nil {
				return nil, err
			}
			in = in[n:]
			out = next
			if len(next) > 0 {
				if _, err := c.Write(next); err != nil {
					return nil, err
				}
			}
			if done {
				return in, nil
			}
			if n == 0 {
				break
			}
		}
		m, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("read from server: %w", err)
		}
		in = append(in, buf[:m]...)
	}
}

// exchange runs client s against server srv over net.Pipe.
func exchange(t *testing.T, srv *socksServer, s *upstream.Socks5, readSize int) ([]byte, socksSeen, error) {
	t.Helper()
	cc, sc := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	_ = cc.SetDeadline(deadline)
	_ = sc.SetDeadline(deadline)
	seenCh := make(chan socksSeen, 1)
	go func() { seenCh <- srv.serve(sc) }()
	rest, err := runSocks(s, cc, readSize)
	if err != nil {
		// The engine closes the upstream on any error: so does this client,
		// which also ends a server waiting for the next stage.
		_ = cc.Close()
	} else {
		// The server may still be writing tunnel data the client has not
		// read: drain it before collecting.
		go func() { _, _ = io.Copy(io.Discard, cc) }()
	}
	var seen socksSeen
	select {
	case seen = <-seenCh:
	case <-time.After(10 * time.Second):
		t.Fatal("SOCKS5 server did not finish")
	}
	_ = cc.Close()
	_ = sc.Close()
	return rest, seen, err
}

func wantPSType(t *testing.T, err error, want proxystatus.Type, detail string) {
	t.Helper()
	var pe *proxystatus.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *proxystatus.Error of type %v", err, err, want)
	}
	if pe.Type != want {
		t.Fatalf("error type %v (%q), want %v", pe.Type, pe.Detail, want)
	}
	if detail != "" && !strings.Contains(pe.Detail, detail) {
		t.Fatalf("detail %q does not contain %q", pe.Detail, detail)
	}
}

func TestSocks5Exchange(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8::42")
	tests := []struct {
		name    string
		srv     socksServer
		client  upstream.Socks5
		rest    string
		atyp    byte
		addr    netip.Addr
		domain  string
		creds   [2]string // user, pass the server saw
		methods []byte
	}{
		{
			name:    "no auth IPv4",
			srv:     socksServer{method: 0, bndAtyp: 1},
			client:  upstream.Socks5{Addr: v4, Port: 443},
			atyp:    1,
			addr:    v4,
			methods: []byte{0},
		},
		{
			name:    "no auth IPv6 request and reply",
			srv:     socksServer{method: 0, bndAtyp: 4},
			client:  upstream.Socks5{Addr: v6, Port: 8443},
			atyp:    4,
			addr:    v6,
			methods: []byte{0},
		},
		{
			name:    "socks5h domain request, domain reply",
			srv:     socksServer{method: 0, bndAtyp: 3, bndDomain: "exit.example.net"},
			client:  upstream.Socks5{Host: []byte("example.com"), Port: 443},
			atyp:    3,
			domain:  "example.com",
			methods: []byte{0},
		},
		{
			name:    "empty-domain reply",
			srv:     socksServer{method: 0, bndAtyp: 3, bndDomain: ""},
			client:  upstream.Socks5{Host: []byte("example.com"), Port: 80},
			atyp:    3,
			domain:  "example.com",
			methods: []byte{0},
		},
		{
			name:    "user/pass accepted",
			srv:     socksServer{method: 2, user: "alice", pass: "p@ss:w0rd", bndAtyp: 1},
			client:  upstream.Socks5{HasAuth: true, User: []byte("alice"), Pass: []byte("p@ss:w0rd"), Addr: v4, Port: 443},
			atyp:    1,
			addr:    v4,
			creds:   [2]string{"alice", "p@ss:w0rd"},
			methods: []byte{0, 2},
		},
		{
			name:    "empty user and password",
			srv:     socksServer{method: 2, bndAtyp: 1},
			client:  upstream.Socks5{HasAuth: true, Host: []byte("h"), Port: 1},
			atyp:    3,
			domain:  "h",
			methods: []byte{0, 2},
		},
		{
			name:    "255-byte credentials and host",
			srv:     socksServer{method: 2, user: strings.Repeat("u", 255), pass: strings.Repeat("p", 255), bndAtyp: 1},
			client:  upstream.Socks5{HasAuth: true, User: bytes.Repeat([]byte("u"), 255), Pass: bytes.Repeat([]byte("p"), 255), Host: bytes.Repeat([]byte("h"), 255), Port: 65535},
			atyp:    3,
			domain:  strings.Repeat("h", 255),
			creds:   [2]string{strings.Repeat("u", 255), strings.Repeat("p", 255)},
			methods: []byte{0, 2},
		},
		{
			name:    "auth offered, server picks no auth",
			srv:     socksServer{method: 0, bndAtyp: 1},
			client:  upstream.Socks5{HasAuth: true, User: []byte("a"), Pass: []byte("b"), Addr: v4, Port: 443},
			atyp:    1,
			addr:    v4,
			methods: []byte{0, 2},
		},
		{
			name:    "tunnel bytes right after the reply are left over",
			srv:     socksServer{method: 0, bndAtyp: 1, after: []byte("SSH-2.0-upstream\r\n")},
			client:  upstream.Socks5{Addr: v4, Port: 22},
			rest:    "SSH-2.0-upstream\r\n",
			atyp:    1,
			addr:    v4,
			methods: []byte{0},
		},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			name     string
			oneByte  bool
			readSize int
		}{{"whole", false, 4096}, {"byte-at-a-time", true, 1}} {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				srv := tt.srv
				srv.oneByte = mode.oneByte
				client := tt.client
				rest, seen, err := exchange(t, &srv, &client, mode.readSize)
				if err != nil {
					t.Fatalf("exchange: %v (server: %v)", err, seen.err)
				}
				if seen.err != nil {
					t.Fatalf("server: %v", seen.err)
				}
				if !bytes.Equal(seen.methods, tt.methods) {
					t.Errorf("methods offered %v, want %v", seen.methods, tt.methods)
				}
				if seen.user != tt.creds[0] || seen.pass != tt.creds[1] {
					t.Errorf("credentials %q:%q, want %q:%q", seen.user, seen.pass, tt.creds[0], tt.creds[1])
				}
				if seen.atyp != tt.atyp || seen.addr != tt.addr || seen.domain != tt.domain || seen.port != client.Port {
					t.Errorf("request atyp=%d addr=%v domain=%q port=%d, want atyp=%d addr=%v domain=%q port=%d",
						seen.atyp, seen.addr, seen.domain, seen.port, tt.atyp, tt.addr, tt.domain, client.Port)
				}
				// With one-byte reads nothing after the reply has been read yet.
				if mode.readSize > 1 && string(rest) != tt.rest {
					t.Errorf("left over %q, want %q", rest, tt.rest)
				}
				if mode.readSize == 1 && len(rest) != 0 {
					t.Errorf("left over %q with one-byte reads", rest)
				}
				// Feeding after done is a protocol error, not a panic.
				if _, _, _, err := feed(client.Feed, []byte{5, 0}, nil); err == nil {
					t.Errorf("Feed after done: no error")
				}
			})
		}
	}
}

func TestSocks5Failures(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.7")
	auth := upstream.Socks5{HasAuth: true, User: []byte("alice"), Pass: []byte("secret"), Addr: v4, Port: 443}
	noAuth := upstream.Socks5{Addr: v4, Port: 443}
	tests := []struct {
		name   string
		srv    socksServer
		client upstream.Socks5
		typ    proxystatus.Type
		detail string
	}{
		{"no acceptable method 0xFF", socksServer{method: 0xFF}, auth, proxystatus.HTTPRequestDenied, "no offered authentication method"},
		{"no acceptable method 0xFF without auth", socksServer{method: 0xFF}, noAuth, proxystatus.HTTPRequestDenied, "no offered"},
		{"server demands auth we did not offer", socksServer{method: 2}, noAuth, proxystatus.HTTPRequestDenied, "no offered"},
		{"server picks GSSAPI", socksServer{method: 1}, auth, proxystatus.HTTPRequestDenied, "no offered"},
		{"credentials rejected", socksServer{method: 2, user: "alice", pass: "other"}, auth, proxystatus.HTTPRequestDenied, "rejected the credentials"},
		{"credentials rejected with status 0xFF", socksServer{method: 2, user: "alice", pass: "secret", authStatus: 0xFF}, auth, proxystatus.HTTPRequestDenied, "rejected"},
		{"REP 1 general failure", socksServer{rep: 1, bndAtyp: 1}, noAuth, proxystatus.DestinationUnavailable, "general failure"},
		{"REP 2 not allowed by ruleset", socksServer{rep: 2, bndAtyp: 1}, noAuth, proxystatus.HTTPRequestDenied, "not allowed by ruleset"},
		{"REP 3 network unreachable", socksServer{rep: 3, bndAtyp: 1}, noAuth, proxystatus.DestinationUnavailable, "network unreachable"},
		{"REP 4 host unreachable", socksServer{rep: 4, bndAtyp: 4}, noAuth, proxystatus.DestinationUnavailable, "host unreachable"},
		{"REP 5 connection refused", socksServer{rep: 5, bndAtyp: 1}, noAuth, proxystatus.DestinationUnavailable, "connection refused"},
		{"REP 6 TTL expired", socksServer{rep: 6, bndAtyp: 3, bndDomain: "x"}, noAuth, proxystatus.DestinationUnavailable, "TTL expired"},
		{"REP 7 command not supported", socksServer{rep: 7, bndAtyp: 1}, noAuth, proxystatus.DestinationUnavailable, "command not supported"},
		{"REP 8 address type not supported", socksServer{rep: 8, bndAtyp: 1}, noAuth, proxystatus.DestinationUnavailable, "address type not supported"},
		{"REP 9 unassigned", socksServer{rep: 9, bndAtyp: 1}, noAuth, proxystatus.DestinationUnavailable, "general failure"},
		{"REP 0xFF unassigned", socksServer{rep: 0xFF, bndAtyp: 1}, auth, proxystatus.DestinationUnavailable, "general failure"},
		{"HTTP answer to the greeting", socksServer{garbage: []byte("HTTP/1.1 400 Bad Request\r\n\r\n")}, noAuth, proxystatus.HTTPResponseError, "no SOCKS5"},
		{"SOCKS4 answer to the greeting", socksServer{garbage: []byte{0, 0x5a, 0, 0, 0, 0, 0, 0}}, noAuth, proxystatus.HTTPResponseError, "no SOCKS5"},
		{"bad auth version", socksServer{method: 2, stage: "auth", garbage: []byte{5, 0}}, auth, proxystatus.HTTPResponseError, "no SOCKS5"},
		{"bad reply version", socksServer{stage: "reply", garbage: []byte{4, 0, 0, 1, 0, 0, 0, 0, 0, 0}}, noAuth, proxystatus.HTTPResponseError, "no SOCKS5"},
		{"bad reply ATYP", socksServer{stage: "reply", garbage: []byte{5, 0, 0, 9, 0, 0, 0, 0, 0, 0}}, noAuth, proxystatus.HTTPResponseError, "no SOCKS5"},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			name := tt.name
			readSize := 4096
			if oneByte {
				name += "/byte-at-a-time"
				readSize = 1
			}
			t.Run(name, func(t *testing.T) {
				srv := tt.srv
				srv.oneByte = oneByte
				if srv.method == 2 && srv.user == "" {
					srv.user, srv.pass = "nobody", "nothing"
				}
				client := tt.client
				_, _, err := exchange(t, &srv, &client, readSize)
				wantPSType(t, err, tt.typ, tt.detail)
			})
		}
	}
}

func TestSocks5StartRejectsLongFields(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 256)
	for _, s := range []upstream.Socks5{
		{HasAuth: true, User: long},
		{HasAuth: true, Pass: long},
		{Host: long},
	} {
		out, err := start(s.Start, []byte("keep"))
		wantPSType(t, err, proxystatus.HTTPRequestError, "255")
		if string(out) != "keep" {
			t.Errorf("Start wrote %q on error", out)
		}
	}
}

// TestSocks5Bytes pins the exact bytes Start and Feed produce (RFC 1928 §3,
// §4; RFC 1929 §2).
func TestSocks5Bytes(t *testing.T) {
	s := upstream.Socks5{HasAuth: true, User: []byte("u1"), Pass: []byte("pw"), Addr: netip.MustParseAddr("10.0.0.1"), Port: 0x1bb}
	out, err := start(s.Start, nil)
	if err != nil || !bytes.Equal(out, []byte{5, 2, 0, 2}) {
		t.Fatalf("greeting %v, %v", out, err)
	}
	n, next, done, err := feed(s.Feed, []byte{5, 2}, nil)
	if n != 2 || done || err != nil || !bytes.Equal(next, []byte{1, 2, 'u', '1', 2, 'p', 'w'}) {
		t.Fatalf("after method: n=%d done=%v err=%v next=%v", n, done, err, next)
	}
	n, next, done, err = feed(s.Feed, []byte{1, 0}, []byte("prefix"))
	if n != 2 || done || err != nil || !bytes.Equal(next, append([]byte("prefix"), 5, 1, 0, 1, 10, 0, 0, 1, 0x01, 0xbb)) {
		t.Fatalf("after auth: n=%d done=%v err=%v next=%v", n, done, err, next)
	}
	reply := []byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for i := range len(reply) {
		if n, _, done, err := feed(s.Feed, reply[:i], nil); n != 0 || done || err != nil {
			t.Fatalf("partial reply of %d bytes: n=%d done=%v err=%v", i, n, done, err)
		}
	}
	n, next, done, err = feed(s.Feed, append(reply, 'x'), nil)
	if n != len(reply) || !done || err != nil || len(next) != 0 {
		t.Fatalf("reply: n=%d done=%v err=%v next=%v", n, done, err, next)
	}

	noAuth := upstream.Socks5{Addr: netip.MustParseAddr("::1"), Port: 80}
	out, _ = start(noAuth.Start, nil)
	if !bytes.Equal(out, []byte{5, 1, 0}) {
		t.Fatalf("greeting without auth %v", out)
	}
	_, next, _, _ = feed(noAuth.Feed, []byte{5, 0}, nil)
	want := append([]byte{5, 1, 0, 4}, netip.MustParseAddr("::1").AsSlice()...)
	if !bytes.Equal(next, append(want, 0, 80)) {
		t.Fatalf("IPv6 request %v", next)
	}
}

func BenchmarkSocks5Feed(b *testing.B) {
	reply := []byte{5, 0, 0, 1, 10, 1, 2, 3, 0x1f, 0x90}
	out := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		s := upstream.Socks5{HasAuth: true, User: []byte("alice"), Pass: []byte("secret"), Host: []byte("example.com"), Port: 443}
		out, _ = start(s.Start, out[:0])
		_, out, _, _ = feed(s.Feed, []byte{5, 2}, out[:0])
		_, out, _, _ = feed(s.Feed, []byte{1, 0}, out[:0])
		if _, _, done, err := feed(s.Feed, reply, out[:0]); !done || err != nil {
			b.Fatal(done, err)
		}
	}
}

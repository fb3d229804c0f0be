package harness

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SOCKS5 address types (RFC 1928 §5).
const (
	Socks5AtypIPv4   byte = 0x01
	Socks5AtypDomain byte = 0x03
	Socks5AtypIPv6   byte = 0x04
)

// Socks5Request is what a Socks5Server recorded of one connection's request.
type Socks5Request struct {
	// Methods are the authentication methods the client offered.
	Methods []byte
	// User and Pass are the RFC 1929 credentials ("" when none were sent).
	User, Pass string
	// Authed reports whether the credentials were accepted.
	Authed bool
	// Cmd is the command (1 = CONNECT), Atyp the address type, Host the
	// address (dotted IP or domain name) and Port the port.
	Cmd  byte
	Atyp byte
	Host string
	Port int
}

// Socks5Server is a SOCKS5 proxy (RFC 1928, CONNECT only) on 127.0.0.1 with
// optional RFC 1929 username/password authentication. It records every
// request and relays bytes to the target it dials.
type Socks5Server struct {
	// Addr is "127.0.0.1:P".
	Addr string

	user, pass string
	auth       bool
	faults     bool
	noRecord   bool
	ln         net.Listener
	conns      atomic.Int64
	mu         sync.Mutex
	reqs       []Socks5Request
	set        connSet
}

// Socks5Option configures StartSocks5.
type Socks5Option func(*Socks5Server)

// Socks5Faults lets each connection pick a fault with its username
// (FaultUser; auth must be on). After the credentials: WireReset resets,
// Wire407 rejects them, WireHang and WireCloseBeforeAnswer read the request
// and then hang or close, WireGarbage answers it with GarbageAnswer,
// WireSlowHead writes each reply byte by byte, WireCutReset and WireCutClose
// cut the relay after CutAfter bytes from the target. Other modes, and
// unknown names, get reply 1 (general failure).
func Socks5Faults() Socks5Option { return func(s *Socks5Server) { s.faults = true } }

// Socks5NoRecord keeps no requests (Requests returns none), so memory stays
// flat over a long run.
func Socks5NoRecord() Socks5Option { return func(s *Socks5Server) { s.noRecord = true } }

// StartSocks5 starts a Socks5Server; with auth it requires method 0x02 and
// the credentials user:pass. It is closed in t.Cleanup.
func StartSocks5(t TB, auth bool, user, pass string, opts ...Socks5Option) *Socks5Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: socks5 listen: %v", err)
	}
	s := &Socks5Server{Addr: ln.Addr().String(), user: user, pass: pass, auth: auth, ln: ln}
	for _, o := range opts {
		o(s)
	}
	s.set.serve(ln, func(c net.Conn) {
		s.conns.Add(1)
		c.SetDeadline(time.Now().Add(10 * time.Minute))
		s.handle(c)
	})
	t.Cleanup(s.Close)
	return s
}

// Conns returns the number of connections accepted.
func (s *Socks5Server) Conns() int64 { return s.conns.Load() }

// Requests returns the requests recorded so far (one per connection that
// got as far as authentication).
func (s *Socks5Server) Requests() []Socks5Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Socks5Request(nil), s.reqs...)
}

// Close stops the listener, closes every connection and waits.
func (s *Socks5Server) Close() { s.set.close(s.ln) }

func (s *Socks5Server) record(r Socks5Request) {
	if s.noRecord {
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
}

func (s *Socks5Server) handle(c net.Conn) {
	br := bufio.NewReader(c)
	var r Socks5Request
	// Greeting: VER NMETHODS METHODS.
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	r.Methods = make([]byte, hdr[1])
	if _, err := io.ReadFull(br, r.Methods); err != nil {
		return
	}
	want := byte(0x00)
	if s.auth {
		want = 0x02
	}
	offered := false
	for _, m := range r.Methods {
		offered = offered || m == want
	}
	if !offered {
		c.Write([]byte{5, 0xFF})
		s.record(r)
		return
	}
	if _, err := c.Write([]byte{5, want}); err != nil {
		return
	}
	mode := WireForward
	if s.auth {
		// RFC 1929: VER ULEN UNAME PLEN PASSWD.
		user, pass, err := readSocksUserPass(br)
		if err != nil {
			return
		}
		r.User, r.Pass = user, pass
		known := true
		if s.faults {
			user, mode, known = splitFaultUser(user)
		}
		r.Authed = user == s.user && pass == s.pass && mode != Wire407
		if !r.Authed {
			c.Write([]byte{1, 1})
			s.record(r)
			lingerClose(c, c, br)
			return
		}
		if mode == WireReset {
			s.record(r)
			resetConn(c)
			return
		}
		if err := writeHead(c, []byte{1, 0}, mode); err != nil {
			return
		}
		if !known || !socksFault[mode] {
			mode = socksFailure
		}
	} else {
		r.Authed = true
	}
	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[0] != 5 {
		s.record(r)
		return
	}
	r.Cmd, r.Atyp = req[1], req[3]
	switch r.Atyp {
	case Socks5AtypIPv4, Socks5AtypIPv6:
		ip := make(net.IP, 4)
		if r.Atyp == Socks5AtypIPv6 {
			ip = make(net.IP, 16)
		}
		if _, err := io.ReadFull(br, ip); err != nil {
			s.record(r)
			return
		}
		r.Host = ip.String()
	case Socks5AtypDomain:
		l, err := br.ReadByte()
		if err != nil {
			s.record(r)
			return
		}
		name := make([]byte, l)
		if _, err := io.ReadFull(br, name); err != nil {
			s.record(r)
			return
		}
		r.Host = string(name)
	default:
		s.record(r)
		c.Write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0}) // address type not supported
		return
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		s.record(r)
		return
	}
	r.Port = int(binary.BigEndian.Uint16(port[:]))
	s.record(r)
	switch mode {
	case socksFailure:
		c.Write([]byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}) // general failure
		return
	case WireHang:
		_, _ = io.Copy(io.Discard, br)
		return
	case WireCloseBeforeAnswer:
		return
	case WireGarbage:
		garbage(c, br)
		return
	}
	if r.Cmd != 1 {
		c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}) // command not supported
		return
	}
	t, err := net.DialTimeout("tcp", net.JoinHostPort(r.Host, strconv.Itoa(r.Port)), 10*time.Second)
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
		return
	}
	if !s.set.track(t) {
		t.Close()
		return
	}
	defer s.set.untrack(t)
	defer t.Close()
	la := t.LocalAddr().(*net.TCPAddr)
	rep := []byte{5, 0, 0, Socks5AtypIPv4}
	if ip4 := la.IP.To4(); ip4 != nil {
		rep = append(rep, ip4...)
	} else {
		rep = append(rep, 0, 0, 0, 0)
	}
	rep = binary.BigEndian.AppendUint16(rep, uint16(la.Port))
	if err := writeHead(c, rep, mode); err != nil {
		return
	}
	Relay(cutter(c, c, mode), br, t, t)
}

// socksFailure is no WireMode: it answers the request with reply 1 (general
// failure), for modes a Socks5Server does not inject.
const socksFailure WireMode = -1

// socksFault are the modes a Socks5Server with faults injects.
var socksFault = map[WireMode]bool{
	WireForward: true, WireReset: true, Wire407: true, WireHang: true, WireCloseBeforeAnswer: true,
	WireGarbage: true, WireSlowHead: true, WireCutReset: true, WireCutClose: true,
}

func readSocksUserPass(br *bufio.Reader) (string, string, error) {
	ver, err := br.ReadByte()
	if err != nil {
		return "", "", err
	}
	if ver != 1 {
		return "", "", errors.New("bad RFC 1929 version")
	}
	read := func() (string, error) {
		l, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		b := make([]byte, l)
		_, err = io.ReadFull(br, b)
		return string(b), err
	}
	user, err := read()
	if err != nil {
		return "", "", err
	}
	pass, err := read()
	return user, pass, err
}

package harness

// Self-tests of fault injection (faults.go): each fault a client picks by
// FaultHeader or FaultUser does what its doc says, seen by a raw client
// without proxyto.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestWireModeNames(t *testing.T) {
	for m := WireForward; m <= WireTinyproxy; m++ {
		got, ok := ParseWireMode(m.String())
		if !ok || got != m {
			t.Errorf("ParseWireMode(%q) = %v, %v; want %v", m.String(), got, ok, m)
		}
	}
	if _, ok := ParseWireMode("no-such-fault"); ok {
		t.Errorf("an unknown name parsed")
	}
	for _, tc := range []struct {
		name, user string
		mode       WireMode
		ok         bool
	}{
		{"alice", "alice", WireForward, true},
		{FaultUser("alice", WireCutClose), "alice", WireCutClose, true},
		{FaultUser("a-fault-b", WireReset), "a-fault-b", WireReset, true},
		{"alice-fault-bogus", "alice", WireForward, false},
	} {
		user, m, ok := splitFaultUser(tc.name)
		if user != tc.user || m != tc.mode || ok != tc.ok {
			t.Errorf("splitFaultUser(%q) = %q, %v, %v; want %q, %v, %v", tc.name, user, m, ok, tc.user, tc.mode, tc.ok)
		}
	}
}

// readToEnd reads the rest of the connection and returns the bytes and the
// error that ended it (nil for EOF).
func (w *wireClient) readToEnd() ([]byte, error) {
	b, err := io.ReadAll(w.br)
	return b, err
}

// wantPatternPrefix fails unless b is the first len(b) bytes of the pattern.
func wantPatternPrefix(t *testing.T, b []byte) {
	t.Helper()
	want, _ := io.ReadAll(PatternReader(int64(len(b))))
	if !bytes.Equal(b, want) {
		t.Fatalf("the %d bytes that came are not the pattern's", len(b))
	}
}

func TestWireUpstreamFaultHeader(t *testing.T) {
	o := StartWireOrigin(t)
	echo := StartEchoOrigin(t)
	u := StartWireUpstream(t, WireUpstreamOptions{Faults: true, NoRecord: true})
	get := func(c *wireClient, fault, path string) {
		c.send("GET " + o.URL(path) + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n" + FaultHeader + ": " + fault + "\r\n\r\n")
	}
	const n = 3 * CutAfter

	t.Run("cut", func(t *testing.T) {
		for _, m := range []WireMode{WireCutReset, WireCutClose} {
			c := dialWire(t, u.Addr)
			get(c, m.String(), "/bytes?n="+strconv.Itoa(n))
			h, err := ReadWireHead(c.br)
			if err != nil || h.StatusCode() != 200 {
				t.Fatalf("%v: head %v %v", m, h, err)
			}
			body, err := c.readToEnd()
			if len(body) != CutAfter {
				t.Fatalf("%v: %d body bytes, want %d", m, len(body), CutAfter)
			}
			wantPatternPrefix(t, body)
			if m == WireCutReset && !IsReset(err) || m == WireCutClose && err != nil {
				t.Fatalf("%v: the body ended with %v", m, err)
			}
		}
	})
	t.Run("cut tunnel", func(t *testing.T) {
		c := dialWire(t, u.Addr)
		c.send("CONNECT " + echo.Addr + " HTTP/1.1\r\n" + FaultHeader + ": close-mid-body\r\n\r\n")
		if r, err := ReadWireResponse(c.br, "CONNECT"); err != nil || r.Status != 200 {
			t.Fatalf("CONNECT: %v %v", r, err)
		}
		payload, _ := io.ReadAll(PatternReader(n))
		go c.c.Write(payload)
		back, err := c.readToEnd()
		if err != nil || len(back) != CutAfter {
			t.Fatalf("tunnel: %d bytes back, %v; want %d then EOF", len(back), err, CutAfter)
		}
		wantPatternPrefix(t, back)
	})
	t.Run("garbage", func(t *testing.T) {
		c := dialWire(t, u.Addr)
		get(c, "garbage", "/x")
		b := make([]byte, len(GarbageAnswer))
		if _, err := io.ReadFull(c.br, b); err != nil || string(b) != GarbageAnswer {
			t.Fatalf("got %q %v", b, err)
		}
	})
	t.Run("slow head", func(t *testing.T) {
		c := dialWire(t, u.Addr)
		get(c, "slow-head", "/bytes?n=10")
		if r := c.resp("GET"); r.Status != 200 || r.BodySHA256 != PatternSHA256(10) {
			t.Fatalf("got %q", r.Head.Raw)
		}
		get(c, "none", "/bytes?n=10") // the connection stays usable
		c.resp("GET")
	})
	t.Run("tinyproxy", func(t *testing.T) {
		c := dialWire(t, u.Addr)
		get(c, "tinyproxy", "/bytes?n=10")
		r := c.resp("GET")
		if r.Status != 200 || r.Head.HasToken("Connection", "close") {
			t.Fatalf("got %q, want a keep-alive-looking 200", r.Head.Raw)
		}
		c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if rest, err := c.readToEnd(); len(rest) != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after the response: %q, %v; want the connection closed", rest, err)
		}
	})
	t.Run("head faults", func(t *testing.T) {
		for _, tc := range []struct {
			fault  string
			status int
		}{
			{"407", 407},
			{"403", 403},
			{"bogus", 400},
		} {
			c := dialWire(t, u.Addr)
			get(c, tc.fault, "/x")
			if r := c.resp("GET"); r.Status != tc.status {
				t.Fatalf("%s: %q", tc.fault, r.Head.Line)
			}
		}
		c := dialWire(t, u.Addr)
		get(c, "reset", "/x")
		if _, err := c.readToEnd(); !IsReset(err) {
			t.Fatalf("reset: %v", err)
		}
	})
	c := dialWire(t, u.Addr) // no header: the server's Mode
	get(c, "", "/bytes?n=10")
	c.resp("GET")
}

// socksDial runs a SOCKS5 handshake with user:pass up to the request and
// returns the client and the first byte of each reply it read.
func socksDial(t *testing.T, addr, user, pass, target string) (*wireClient, error) {
	t.Helper()
	c := dialWire(t, addr)
	host, port, _ := net.SplitHostPort(target)
	p, _ := strconv.Atoi(port)
	req := []byte{5, 1, 2, 1, byte(len(user))}
	req = append(req, user...)
	req = append(req, byte(len(pass)))
	req = append(req, pass...)
	req = append(req, 5, 1, 0, 1)
	req = append(req, net.ParseIP(host).To4()...)
	req = binary.BigEndian.AppendUint16(req, uint16(p))
	c.send(string(req))
	var method, auth [2]byte
	if _, err := io.ReadFull(c.br, method[:]); err != nil {
		return c, err
	}
	if _, err := io.ReadFull(c.br, auth[:]); err != nil {
		return c, err
	}
	if auth[1] != 0 {
		return c, fmt.Errorf("auth rejected (%d)", auth[1])
	}
	var rep [10]byte
	if _, err := io.ReadFull(c.br, rep[:]); err != nil {
		return c, err
	}
	if rep[0] != 5 || rep[1] != 0 {
		return c, fmt.Errorf("reply %x", rep[:2])
	}
	return c, nil
}

func TestSocks5Faults(t *testing.T) {
	src := StartSourceOrigin(t, 3*CutAfter)
	s := StartSocks5(t, true, "su", "sp", Socks5Faults(), Socks5NoRecord())

	c, err := socksDial(t, s.Addr, "su", "sp", src.Addr)
	if err != nil {
		t.Fatalf("no fault: %v", err)
	}
	if b, err := c.readToEnd(); err != nil || len(b) != 3*CutAfter {
		t.Fatalf("no fault: %d bytes, %v", len(b), err)
	}
	for _, m := range []WireMode{WireCutReset, WireCutClose, WireSlowHead} {
		c, err := socksDial(t, s.Addr, FaultUser("su", m), "sp", src.Addr)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		b, err := c.readToEnd()
		want := map[WireMode]int{WireCutReset: CutAfter, WireCutClose: CutAfter, WireSlowHead: 3 * CutAfter}[m]
		if len(b) != want || (m == WireCutReset) != IsReset(err) {
			t.Fatalf("%v: %d bytes, %v; want %d", m, len(b), err, want)
		}
		wantPatternPrefix(t, b)
	}
	if _, err := socksDial(t, s.Addr, FaultUser("su", Wire407), "sp", src.Addr); err == nil || err.Error() != "auth rejected (1)" {
		t.Fatalf("407: %v", err)
	}
	if _, err := socksDial(t, s.Addr, FaultUser("su", WireReset), "sp", src.Addr); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reset: %v", err)
	}
	if _, err := socksDial(t, s.Addr, FaultUser("su", WireGarbage), "sp", src.Addr); err == nil {
		t.Fatalf("garbage: the handshake succeeded")
	}
	if _, err := socksDial(t, s.Addr, FaultUser("su", WireTinyproxy), "sp", src.Addr); err == nil || err.Error() != "reply 0501" {
		t.Fatalf("a mode SOCKS5 does not inject: %v, want general failure", err)
	}
	if len(s.Requests()) != 0 {
		t.Fatalf("Socks5NoRecord recorded %d requests", len(s.Requests()))
	}
}

func TestRefusedAddr(t *testing.T) {
	addr := RefusedAddr(t)
	for range 3 {
		if c, err := net.DialTimeout("tcp", addr, 10*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("dial %s: %v, want connection refused", addr, err)
		}
	}
}

package harness

// Fault injection shared by WireUpstream and Socks5Server: one vocabulary
// (WireMode) for the ways an upstream proxy misbehaves, chosen for the whole
// server (WireUpstreamOptions.Mode, SetMode) or, with Faults set, by the
// client for one exchange (FaultHeader, FaultUser). Tests and the soak
// (scripts/soak) pick the fault, so each of them knows which fault hit which
// exchange.

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"
)

// FaultHeader is the request header field with which a client picks the
// fault a WireUpstream with Faults set injects into that one exchange, by
// WireMode name ("X-Wire-Fault: reset-mid-body"). The field is forwarded
// like any other.
const FaultHeader = "X-Wire-Fault"

// faultUserSep separates a SOCKS5 username from the fault it asks for.
const faultUserSep = "-fault-"

// FaultUser returns the RFC 1929 username with which a client asks a
// Socks5Server with faults for fault m ("user-fault-reset"); the server
// checks the credentials against user.
func FaultUser(user string, m WireMode) string { return user + faultUserSep + m.String() }

// splitFaultUser undoes FaultUser; a name without a fault is WireForward.
func splitFaultUser(name string) (user string, m WireMode, ok bool) {
	i := strings.LastIndex(name, faultUserSep)
	if i < 0 {
		return name, WireForward, true
	}
	m, ok = ParseWireMode(name[i+len(faultUserSep):])
	return name[:i], m, ok
}

// Fault parameters, the same for every server.
const (
	// CutAfter is how many bytes WireCutReset and WireCutClose let through
	// towards the client (response body bytes; for tunnels and SOCKS5, bytes
	// from the target) before they cut the connection.
	CutAfter = 32 << 10
	// SlowHeadPause is what WireSlowHead sleeps after each byte of a
	// response head (a ~100-byte head takes about half a second).
	SlowHeadPause = 5 * time.Millisecond
	// TinyproxyMaxDelay bounds the random delay after which WireTinyproxy
	// closes the connection behind its response.
	TinyproxyMaxDelay = 50 * time.Millisecond
)

// GarbageAnswer is what WireGarbage sends instead of a response: not HTTP,
// and not SOCKS5 either (the first byte is no version 5).
const GarbageAnswer = "\x00\x17\x03 THIS IS NOT A PROXY ANSWER \xff\xfe\r\n\r\n"

// wireModeNames are the WireMode names of FaultHeader, FaultUser and
// String.
var wireModeNames = [...]string{
	WireForward:           "none",
	WireHang:              "hang",
	WireReset:             "reset",
	WireCloseBeforeAnswer: "close",
	Wire407:               "407",
	Wire403:               "403",
	WireHalfBodyReset:     "half-body-reset",
	WireGarbage:           "garbage",
	WireSlowHead:          "slow-head",
	WireCutReset:          "reset-mid-body",
	WireCutClose:          "close-mid-body",
	Wire503:               "503",
	WireTinyproxy:         "tinyproxy",
}

// String returns the mode's name, as FaultHeader takes it.
func (m WireMode) String() string {
	if m >= 0 && int(m) < len(wireModeNames) {
		return wireModeNames[m]
	}
	return "unknown"
}

// ParseWireMode returns the mode named s (see String).
func ParseWireMode(s string) (WireMode, bool) {
	for m, name := range wireModeNames {
		if name == s {
			return WireMode(m), true
		}
	}
	return WireForward, false
}

// resetConn closes raw with a TCP RST (SO_LINGER 0).
func resetConn(raw net.Conn) {
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	raw.Close()
}

// finConn sends FIN on c (after a TLS close_notify when c is TLS over raw)
// without closing the read side.
func finConn(c, raw net.Conn) {
	_ = closeWrite(c)
	if c != raw {
		_ = closeWrite(raw)
	}
}

// lingerTime bounds lingerClose's wait.
const lingerTime = 2 * time.Second

// lingerClose follows an answer that ends the connection: it sends FIN,
// then reads what the peer still sends (a request body, a pipelined SOCKS5
// request) until the peer closes or lingerTime passes. Closing with unread
// bytes would send a reset, which may destroy the answer in flight; a server
// that means to be understood lingers (net/http does the same).
func lingerClose(c, raw net.Conn, r io.Reader) {
	finConn(c, raw)
	raw.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.Copy(io.Discard, r)
}

// garbage answers with GarbageAnswer, then reads until the peer closes: the
// garbage is the only thing the peer has to react to.
func garbage(c net.Conn, r io.Reader) {
	if _, err := io.WriteString(c, GarbageAnswer); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, r)
}

// writeHead writes a response head: at once, or one byte per SlowHeadPause
// for WireSlowHead.
func writeHead(w io.Writer, head []byte, m WireMode) error {
	if m != WireSlowHead {
		_, err := w.Write(head)
		return err
	}
	for i := range head {
		if _, err := w.Write(head[i : i+1]); err != nil {
			return err
		}
		time.Sleep(SlowHeadPause)
	}
	return nil
}

// tinyproxyPause sleeps up to TinyproxyMaxDelay: how long a tinyproxy-like
// upstream keeps a connection open after a keep-alive-looking response.
func tinyproxyPause() { time.Sleep(rand.N(TinyproxyMaxDelay + 1)) }

// errCut is what writes fail with after a WireCutReset cut.
var errCut = errors.New("harness: connection cut by fault injection")

// cutConn is the client side of an exchange with a mid-body fault: writes
// pass until CutAfter bytes went through, then the connection is reset
// (WireCutReset; later writes fail) or its write side closed (WireCutClose;
// later writes are dropped, so a relay keeps reading the other direction
// until the peer closes too). One goroutine writes.
type cutConn struct {
	net.Conn          // what is written to (TLS for an https upstream)
	raw      net.Conn // the TCP connection under it
	left     int
	reset    bool
	cut      bool
}

// cutter returns c wrapped in a cutConn for the mid-body modes, and c itself
// for the others.
func cutter(c, raw net.Conn, m WireMode) net.Conn {
	if m != WireCutReset && m != WireCutClose {
		return c
	}
	return &cutConn{Conn: c, raw: raw, left: CutAfter, reset: m == WireCutReset}
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.cut {
		if c.reset {
			return 0, errCut
		}
		return len(p), nil
	}
	if len(p) < c.left {
		n, err := c.Conn.Write(p)
		c.left -= n
		return n, err
	}
	n, err := c.Conn.Write(p[:c.left])
	c.cut = true
	if err != nil {
		return n, err
	}
	if c.reset {
		resetConn(c.raw)
		return n, errCut
	}
	finConn(c.Conn, c.raw)
	return len(p), nil
}

// CloseWrite passes a half-close on unless the cut already closed.
func (c *cutConn) CloseWrite() error {
	if c.cut {
		return nil
	}
	return closeWrite(c.Conn)
}

package main

import (
	"bytes"
	"errors"
	"log"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// listenSpec is one listener an origin or upstream process opens.
type listenSpec struct {
	Label string `json:"label"` // the phase it serves ("probe" for the probe's)
	IP    string `json:"ip"`
	Kind  string `json:"kind"` // origin: "echo" or "http"; upstream: "proxy"
}

// serverSpec is what an origin or upstream process is started with.
type serverSpec struct {
	Listen  []listenSpec  `json:"listen"`
	MaxHold time.Duration `json:"max_hold"` // origin: longest an HTTP request waits for release
}

// server is an origin or an upstream process: its listeners and counters.
type server struct {
	spec    serverSpec
	open    atomic.Int64 // connections open now
	held    atomic.Int64 // origin: /hold requests waiting for release
	release atomic.Pointer[chan struct{}]
}

// released is the closed channel a server's release points at between a
// release and the next rearm.
var released = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// listenAll opens every listener of s.spec (port 0 on its address) and
// returns the bound addresses by label.
func (s *server) listenAll(handle func(*server, *net.TCPConn, string)) (map[string][]string, error) {
	addrs := map[string][]string{}
	for _, l := range s.spec.Listen {
		ln, err := net.Listen("tcp4", net.JoinHostPort(l.IP, "0"))
		if err != nil {
			return nil, err
		}
		addrs[l.Label] = append(addrs[l.Label], ln.Addr().String())
		go s.accept(ln.(*net.TCPListener), l.Kind, handle)
	}
	return addrs, nil
}

func (s *server) accept(ln *net.TCPListener, kind string, handle func(*server, *net.TCPConn, string)) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				// EMFILE and the like: back off rather than spin.
				log.Printf("accept on %s: %v", ln.Addr(), err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return
		}
		s.open.Add(1)
		go func() {
			defer s.open.Add(-1)
			handle(s, c, kind)
		}()
	}
}

// control answers the coordinator's requests to an origin or upstream:
// "stats" (connections open, requests held), "release" (answer every held
// request now) and "rearm" (hold the next ones again).
func (s *server) control(r request) reply {
	switch r.Op {
	case "release":
		// Swapping in the closed channel makes a second release, and a
		// request arriving after the first, harmless.
		if ch := s.release.Swap(&released); ch != nil && ch != &released {
			close(*ch)
		}
	case "rearm":
		ch := make(chan struct{})
		s.release.Store(&ch)
	case "stats":
	default:
		return reply{Err: "unknown op " + r.Op}
	}
	return reply{Open: int(s.open.Load()), Held: int(s.held.Load())}
}

// serveOrigin is an origin connection: an echo, or one HTTP request.
func serveOrigin(s *server, c *net.TCPConn, kind string) {
	defer c.Close()
	if kind == "echo" {
		_ = pump(c, c)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	head, _, err := readHead(c, make([]byte, 2048))
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	_, target, _, ok := requestLine(head)
	var body []byte
	switch {
	case !ok:
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		return
	case bytes.HasPrefix(target, []byte("/hold/")):
		// Held until the coordinator releases the round, so all N
		// requests are open at once, whatever the opening took.
		body = append(bytes.Clone(target[len("/hold/"):]), '\n') // frees the head buffer while held
		s.held.Add(1)
		ch := s.release.Load()
		t := time.NewTimer(s.spec.MaxHold)
		select {
		case <-*ch:
		case <-t.C:
		}
		t.Stop()
		s.held.Add(-1)
	default:
		body = []byte("fast\n")
	}
	resp := make([]byte, 0, 128)
	resp = append(resp, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "...)
	resp = strconv.AppendInt(resp, int64(len(body)), 10)
	resp = append(resp, "\r\n\r\n"...)
	resp = append(resp, body...)
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, _ = c.Write(resp)
}

// serveUpstream is the test's upstream proxy: CONNECT host:port opens a
// relay to it; an absolute-form request is sent on in origin-form and the
// connection becomes a relay (the origin answers Connection: close, so
// there is no second request to route).
func serveUpstream(_ *server, c *net.TCPConn, _ string) {
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	head, rest, err := readHead(c, make([]byte, 4096))
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	method, target, version, ok := requestLine(head)
	var out []byte
	if ok && string(method) == "CONNECT" {
		out = rest
	} else if hostPort, path, isAbs := absoluteForm(target); ok && isAbs {
		out = make([]byte, 0, len(head)+len(rest))
		out = append(out, method...)
		out = append(out, ' ')
		out = append(out, path...)
		out = append(out, ' ')
		out = append(out, version...)
		out = append(out, head[bytes.Index(head, []byte("\r\n")):]...)
		out = append(out, rest...)
		target = hostPort
	} else {
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		c.Close()
		return
	}
	oc, err := net.DialTimeout("tcp4", string(target), 10*time.Second)
	if err != nil {
		_, _ = c.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		c.Close()
		return
	}
	o := oc.(*net.TCPConn)
	if string(method) == "CONNECT" {
		if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			c.Close()
			o.Close()
			return
		}
	}
	if len(out) > 0 {
		if _, err := o.Write(out); err != nil {
			c.Close()
			o.Close()
			return
		}
	}
	relay(c, o)
}

// readHead reads from c into buf until a blank line ends a head, and
// returns the head (through its final CRLF CRLF) and any bytes read past it.
func readHead(c net.Conn, buf []byte) (head, rest []byte, err error) {
	n := 0
	for {
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			return buf[: i+4 : i+4], buf[i+4 : n], nil
		}
		if n == len(buf) {
			return nil, nil, errors.New("proxyto: scaletest: request or response head too large")
		}
		m, err := c.Read(buf[n:])
		n += m
		if err != nil && m == 0 {
			return nil, nil, err
		}
	}
}

// requestLine splits the first line of head.
func requestLine(head []byte) (method, target, version []byte, ok bool) {
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) != 3 {
		return nil, nil, nil, false
	}
	return f[0], f[1], f[2], true
}

// absoluteForm splits "http://host:port/path" into host:port and /path.
func absoluteForm(target []byte) (hostPort, path []byte, ok bool) {
	rest, ok := bytes.CutPrefix(target, []byte("http://"))
	if !ok {
		return nil, nil, false
	}
	i := bytes.IndexByte(rest, '/')
	if i < 0 {
		return rest, []byte("/"), true
	}
	return rest[:i], rest[i:], true
}

// statusCode parses the status of an HTTP/1.x response line.
func statusCode(head []byte) int {
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) {
		return 0
	}
	n, err := strconv.Atoi(string(head[9:12]))
	if err != nil {
		return 0
	}
	return n
}

// contentLength returns the Content-Length of a head, or -1.
func contentLength(head []byte) int {
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err == nil {
				return n
			}
		}
	}
	return -1
}

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// client is one client connection to proxyto. Every read and write gets a
// deadline of idle from the moment it starts, so an operation that moves no
// byte for longer than proxyto's relevant timeout plus slack ends with
// os.ErrDeadlineExceeded: a hang.
type client struct {
	c    *net.TCPConn
	r    *bufio.Reader
	idle atomic.Int64 // time.Duration
}

func dialProxy(addr string, idle time.Duration) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, idle)
	if err != nil {
		return nil, err
	}
	cl := &client{c: c.(*net.TCPConn)}
	cl.idle.Store(int64(idle))
	cl.r = bufio.NewReaderSize(progressReader{cl}, 64<<10)
	return cl, nil
}

// setIdle changes the deadline of the operations that start from now on.
func (c *client) setIdle(d time.Duration) { c.idle.Store(int64(d)) }

type progressReader struct{ c *client }

func (p progressReader) Read(b []byte) (int, error) {
	p.c.c.SetReadDeadline(time.Now().Add(time.Duration(p.c.idle.Load())))
	return p.c.c.Read(b)
}

// Write writes b, each underlying write bounded by the idle deadline.
func (c *client) Write(b []byte) (int, error) {
	var n int
	for n < len(b) {
		c.c.SetWriteDeadline(time.Now().Add(time.Duration(c.idle.Load())))
		chunk := min(len(b)-n, 256<<10)
		k, err := c.c.Write(b[n : n+chunk])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *client) writeString(s string) error {
	_, err := c.Write([]byte(s))
	return err
}

func (c *client) closeWrite() error { return c.c.CloseWrite() }

// abort closes with a reset.
func (c *client) abort() {
	c.c.SetLinger(0)
	c.c.Close()
}

func (c *client) Close() error { return c.c.Close() }

// readAllIdle reads to EOF; the error is the one that ended reading (nil for
// EOF).
func (c *client) readAllIdle() ([]byte, error) { return io.ReadAll(c.r) }

// isHang reports whether err is a client deadline: proxyto neither moved a
// byte nor closed within its timeout plus slack.
func isHang(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// isClosed reports whether err is the connection ending: EOF (also mid-head
// or mid-body) or a reset.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || harness.IsReset(err) || errors.Is(err, net.ErrClosed)
}

// errWord is a short, groupable name for an I/O error.
func errWord(err error) string {
	switch {
	case err == nil:
		return "ok"
	case isHang(err):
		return "no progress within the deadline"
	case harness.IsReset(err):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	}
	return "error"
}

// proxyStatus returns the error type and received-status of a Proxy-Status
// field ("proxyto; error=connection_refused; received-status=407; …"); ""
// when there is none.
func proxyStatus(h *harness.WireHead) (errType string, received int) {
	for _, v := range h.Values("Proxy-Status") {
		for _, p := range strings.Split(v, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
			switch k {
			case "error":
				errType = val
			case "received-status":
				received, _ = strconv.Atoi(val)
			}
		}
	}
	return errType, received
}

// describe names a response head for a reason: "502 connection_terminated".
func describe(h *harness.WireHead) string {
	s := strconv.Itoa(h.StatusCode())
	if t, r := proxyStatus(h); t != "" {
		s += " " + t
		if r != 0 {
			s += " received-status=" + strconv.Itoa(r)
		}
	}
	return s
}

// readBody reads a response body framed as h says for method into w.
func readBody(c *client, h *harness.WireHead, method string, w io.Writer) (int64, error) {
	f, n, err := harness.ResponseFraming(h, method)
	if err != nil {
		return 0, err
	}
	_, got, err := harness.CopyBody(c.r, f, n, nil, w)
	return got, err
}

// patternCheck is a writer that compares what it gets with the harness's
// byte pattern from offset 0 and remembers the first difference.
type patternCheck struct {
	src     io.Reader
	off     int64
	badAt   int64 // -1 while every byte matched
	scratch []byte
}

func newPatternCheck() *patternCheck {
	return &patternCheck{src: harness.PatternReader(1 << 62), badAt: -1}
}

func (p *patternCheck) Write(b []byte) (int, error) {
	if cap(p.scratch) < len(b) {
		p.scratch = make([]byte, len(b))
	}
	want := p.scratch[:len(b)]
	io.ReadFull(p.src, want)
	if p.badAt < 0 && !bytes.Equal(b, want) {
		for i := range b {
			if b[i] != want[i] {
				p.badAt = p.off + int64(i)
				break
			}
		}
	}
	p.off += int64(len(b))
	return len(b), nil
}

// ok reports whether every byte so far was the pattern's.
func (p *patternCheck) ok() bool { return p.badAt < 0 }

func (p *patternCheck) String() string {
	if p.ok() {
		return fmt.Sprintf("%d bytes, all as sent", p.off)
	}
	return fmt.Sprintf("%d bytes, first wrong byte at %d", p.off, p.badAt)
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// request is one command from the coordinator to a child process.
type request struct {
	Op string `json:"op"` // loadgen: open, verify, close; servers: stats, release, rearm
	// open: connect (a tunnel to an echo origin, proven by an echo) or
	// http (a request to a holding origin, sent and left in flight).
	Kind      string   `json:"kind,omitempty"`
	Proxy     string   `json:"proxy,omitempty"`
	Srcs      []string `json:"srcs,omitempty"`
	Upstreams []string `json:"upstreams,omitempty"`
	Origins   []string `json:"origins,omitempty"`
	// The connections of this load generator are numbered First,
	// First+Step, …, Count of them; the number picks the upstream and the
	// origin address, and is what the echo and the response carry.
	First, Step, Count int
	// Rate is connections opened (or checked, or closed) per second.
	Rate    float64       `json:"rate,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"` // per connection step
}

// reply is a child's answer: one per request, and one "ready" at start.
type reply struct {
	OK      int            `json:"ok"`
	Refused int            `json:"refused,omitempty"` // 429 from proxyto's --max-conns
	Errors  map[string]int `json:"errors,omitempty"`  // by kind
	Example string         `json:"example,omitempty"` // the first error in full
	// RefusedBy counts how proxyto closed refused connections: "fin" or "reset".
	RefusedBy map[string]int      `json:"refused_by,omitempty"`
	Secs      float64             `json:"secs,omitempty"`
	Open      int                 `json:"open"`
	Held      int                 `json:"held"`
	Addrs     map[string][]string `json:"addrs,omitempty"` // ready: listeners by label
	Err       string              `json:"err,omitempty"`
}

// tally collects outcomes from many workers.
type tally struct {
	mu        sync.Mutex
	ok        int
	refused   int
	refusedBy map[string]int
	errs      map[string]int
	example   string
}

func (t *tally) fail(kind string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.errs == nil {
		t.errs = map[string]int{}
	}
	t.errs[kind]++
	if t.example == "" {
		t.example = fmt.Sprintf("%s: %v", kind, err)
	}
}

func (t *tally) success() {
	t.mu.Lock()
	t.ok++
	t.mu.Unlock()
}

func (t *tally) reply(start time.Time) reply {
	t.mu.Lock()
	defer t.mu.Unlock()
	return reply{OK: t.ok, Refused: t.refused, RefusedBy: t.refusedBy, Errors: t.errs, Example: t.example, Secs: time.Since(start).Seconds()}
}

// loadgen holds a phase's connections between requests: no goroutine per
// connection, only the sockets.
type loadgen struct {
	req   request
	conns []*net.TCPConn // by local index; nil where opening failed or was refused
}

func (lg *loadgen) handle(r request) reply {
	switch r.Op {
	case "open":
		lg.closeAll()
		lg.req = r
		lg.conns = make([]*net.TCPConn, r.Count)
		return lg.run(r.Rate, lg.open)
	case "verify":
		return lg.run(lg.req.Rate*2, lg.verify)
	case "close":
		return lg.run(lg.req.Rate*4, func(k int, t *tally, _ []byte) {
			if c := lg.conns[k]; c != nil {
				c.Close()
				lg.conns[k] = nil
				t.success()
			}
		})
	}
	return reply{Err: "unknown op " + r.Op}
}

func (lg *loadgen) closeAll() {
	for k, c := range lg.conns {
		if c != nil {
			c.Close()
			lg.conns[k] = nil
		}
	}
}

// run calls step for every local index at rate per second, on a bounded
// number of workers. A worker takes the next index and waits for its turn
// (start + k/rate), so a stall is caught up at once, up to the workers.
func (lg *loadgen) run(rate float64, step func(k int, t *tally, buf []byte)) reply {
	const workers = 1024
	var t tally
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range min(workers, max(1, lg.req.Count)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				k := int(next.Add(1) - 1)
				if k >= lg.req.Count {
					return
				}
				if rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(float64(k) / rate * float64(time.Second)))))
				}
				step(k, &t, buf)
			}
		}()
	}
	wg.Wait()
	return t.reply(start)
}

// dialers are one per source address, created once per phase.
var dialers sync.Map // source address -> *net.Dialer

func dialerFor(src string, timeout time.Duration) *net.Dialer {
	if d, ok := dialers.Load(src); ok {
		return d.(*net.Dialer)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout, Control: noPortBind}
	dialers.Store(src, d)
	return d
}

// echoMsg is what tunnel id sends and expects back on step ("o" opening,
// "v" verifying): 16 bytes.
func echoMsg(step byte, id int) []byte {
	return fmt.Appendf(nil, "%c%014d\n", step, id)
}

func (lg *loadgen) target(k int) (id int, src, up, origin string) {
	r := &lg.req
	id = r.First + k*r.Step
	return id, r.Srcs[k%len(r.Srcs)], r.Upstreams[id%len(r.Upstreams)], r.Origins[id%len(r.Origins)]
}

// open is one connection's opening: a tunnel proven by an echo, or a request
// sent and left in flight.
func (lg *loadgen) open(k int, t *tally, buf []byte) {
	id, src, up, origin := lg.target(k)
	nc, err := dialerFor(src, lg.req.Timeout).Dial("tcp4", lg.req.Proxy)
	if err != nil {
		t.fail("dial: "+errKind(err), err)
		return
	}
	c := nc.(*net.TCPConn)
	_ = c.SetDeadline(time.Now().Add(lg.req.Timeout))
	var head []byte
	if lg.req.Kind == "http" {
		head = fmt.Appendf(buf[:0], "GET http://%s/hold/%d HTTP/1.1\r\nHost: %s\r\nX-Proxy-To: %s\r\n\r\n", origin, id, origin, up)
	} else {
		head = fmt.Appendf(buf[:0], "CONNECT %s HTTP/1.1\r\nHost: %s\r\nX-Proxy-To: %s\r\n\r\n", origin, origin, up)
	}
	_, werr := c.Write(head)
	if lg.req.Kind == "http" {
		if werr != nil {
			t.fail("write: "+errKind(werr), werr)
			c.Close()
			return
		}
		lg.keep(k, c, t)
		return
	}
	// Read the answer even when the write failed: a refusal may have
	// been written before the reset that failed it.
	resp, rest, err := readHead(c, buf)
	if err != nil {
		if werr != nil {
			err = werr
		}
		t.fail("connect: "+errKind(err), err)
		c.Close()
		return
	}
	switch status := statusCode(resp); {
	case status == 429:
		lg.refused(c, resp, t)
		return
	case status != 200:
		t.fail("connect: status "+strconv.Itoa(status), fmt.Errorf("%q", firstLine(resp)))
		c.Close()
		return
	case len(rest) > 0:
		t.fail("connect: bytes after 200", fmt.Errorf("%q", rest))
		c.Close()
		return
	}
	if err := echo(c, echoMsg('o', id), buf); err != nil {
		t.fail("echo: "+errKind(err), err)
		c.Close()
		return
	}
	lg.keep(k, c, t)
}

// keep holds an opened connection until the next step, and counts it.
func (lg *loadgen) keep(k int, c *net.TCPConn, t *tally) {
	_ = c.SetDeadline(time.Time{})
	lg.conns[k] = c
	t.success()
}

// refused checks that a 429 is proxyto's connection-limit answer, and
// records how the connection ended after it.
func (lg *loadgen) refused(c *net.TCPConn, resp []byte, t *tally) {
	defer c.Close()
	if !bytes.Contains(resp, []byte("connection_limit_reached")) {
		t.fail("connect: 429 without Proxy-Status connection_limit_reached", fmt.Errorf("%q", resp))
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(lg.req.Timeout))
	var one [1]byte
	how := "fin"
	if _, err := io.ReadFull(c, one[:]); err == nil {
		t.fail("connect: bytes after 429", fmt.Errorf("%q", one[:]))
		return
	} else if errors.Is(err, syscall.ECONNRESET) {
		how = "reset"
	} else if !errors.Is(err, io.EOF) {
		t.fail("connect: after 429: "+errKind(err), err)
		return
	}
	t.mu.Lock()
	t.refused++
	if t.refusedBy == nil {
		t.refusedBy = map[string]int{}
	}
	t.refusedBy[how]++
	t.mu.Unlock()
}

// verify proves a held connection still works: a tunnel echoes again; an
// in-flight request gets its own response.
func (lg *loadgen) verify(k int, t *tally, buf []byte) {
	c := lg.conns[k]
	if c == nil {
		return
	}
	id, _, _, _ := lg.target(k)
	_ = c.SetDeadline(time.Now().Add(lg.req.Timeout))
	defer c.SetDeadline(time.Time{})
	if lg.req.Kind != "http" {
		if err := echo(c, echoMsg('v', id), buf); err != nil {
			t.fail("verify echo: "+errKind(err), err)
			return
		}
		t.success()
		return
	}
	resp, rest, err := readHead(c, buf)
	if err != nil {
		t.fail("response: "+errKind(err), err)
		return
	}
	if s := statusCode(resp); s != 200 {
		t.fail("response: status "+strconv.Itoa(s), fmt.Errorf("%q", firstLine(resp)))
		return
	}
	want := strconv.Itoa(id) + "\n"
	if cl := contentLength(resp); cl != len(want) {
		t.fail("response: content-length", fmt.Errorf("Content-Length %d, want %d", cl, len(want)))
		return
	}
	body := make([]byte, len(want))
	n := copy(body, rest)
	if _, err := io.ReadFull(c, body[n:]); err != nil {
		t.fail("response body: "+errKind(err), err)
		return
	}
	if string(body) != want {
		t.fail("response: wrong body", fmt.Errorf("body %q, want %q", body, want))
		return
	}
	t.success()
}

// echo writes msg and reads it back.
func echo(c net.Conn, msg, buf []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := buf[:len(msg)]
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, sent %q", got, msg)
	}
	return nil
}

func firstLine(b []byte) []byte {
	line, _, _ := bytes.Cut(b, []byte("\r\n"))
	return line
}

// errKind names an error by a closed set of kinds, for counting.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// outcome is how an exchange ended, as the table counts it.
type outcome uint8

const (
	// outOK: the exchange did what it set out to do (for a clean
	// exchange: succeeded with every byte identical).
	outOK outcome = iota
	// outExpected: the error the fault (or the client's misbehaviour) must
	// produce: the right status and Proxy-Status type, or a close after
	// response bytes were sent.
	outExpected
	// outUnexpected: anything else, a clean exchange that failed included.
	outUnexpected
	// outHang: a client operation moved no byte within proxyto's timeout
	// plus slack.
	outHang
	numOutcomes
)

// result is one exchange, as recorded.
type result struct {
	// phase names the phase of a result outside the mixed population
	// (slowloris, probes, warm-up); "" inside it.
	phase string
	kind  kind
	up    upstream
	fault fault
	out   outcome
	// reason groups unexpected outcomes and hangs ("got 502
	// connection_terminated, want 200"); detail is this exchange's
	// specifics.
	reason, detail string
	// client is the client's address on its connection to proxyto, as
	// proxyto's access lines name it.
	client string
	// target is the request target (CONNECT host:port or absolute URL) of
	// the request the result is about, as access lines name it.
	target string
	dur    time.Duration
}

// exchange is one client exchange in progress.
type exchange struct {
	s   *servers
	to  timeouts
	rng *rand.Rand
	id  uint64
	// start is when the exchange began; targets are the absolute-form
	// targets it sent (see servers.seen).
	start   time.Time
	targets []string
	// fixed, when > 0, replaces the drawn size of a GET body or a tunnel
	// payload (the latency probes use small fixed sizes).
	fixed int
	res   result
}

func (x *exchange) ok()       { x.res.out = outOK }
func (x *exchange) expected() { x.res.out = outExpected }

func (x *exchange) unexpected(reason, format string, args ...any) {
	saw := x.upstreamSaw()
	if strings.Contains(saw, bodyBrokeOff) {
		reason += bodyStalled
	}
	x.res.out, x.res.reason, x.res.detail = outUnexpected, reason, fmt.Sprintf(format, args...)+saw
}

// bodyBrokeOff is how servers.sawBody words a body an upstream did not
// get whole; bodyStalled marks the reason of such a problem.
const (
	bodyBrokeOff = ", then "
	bodyStalled  = " (the upstream got part of the body only)"
)

// ioFailed records a failed read or write during step: a hang when it hit
// the deadline, unexpected otherwise.
func (x *exchange) ioFailed(step string, err error) {
	if isHang(err) {
		x.res.out, x.res.reason, x.res.detail = outHang, step+": no progress within the deadline", err.Error()+x.upstreamSaw()
		return
	}
	x.unexpected(step+": "+errWord(err), "%v", err)
}

// upstreamSaw says whether the http or https upstream received the request
// the result is about, and when, for a problem's detail.
func (x *exchange) upstreamSaw() string {
	if x.res.up == upSOCKS5 || !strings.HasPrefix(x.res.target, "http://") {
		return ""
	}
	at, body := x.s.heads(x.res.target)
	if len(at) == 0 {
		return "; the upstream never got the request head"
	}
	if body != "" {
		body = "; of its body it read " + body
	}
	ms := make([]string, len(at))
	for i, t := range at {
		ms[i] = t.Sub(x.start).Round(time.Millisecond).String()
	}
	if len(at) == 1 {
		return "; the upstream got the request head " + ms[0] + " into the exchange" + body
	}
	return fmt.Sprintf("; the upstream got the request head %d times (%s into the exchange)%s", len(at), strings.Join(ms, ", "), body)
}

// nextID numbers the exchanges of a run; ids go into request targets, so
// each target names one exchange.
var nextID atomic.Uint64

// run runs the exchange as kind k and returns its result.
func (x *exchange) run(k kind) result {
	x.res.kind = k
	x.start = time.Now()
	kinds[k].run(x)
	x.res.dur = time.Since(x.start)
	x.s.forget(x.targets)
	return x.res
}

// dial connects to proxyto with the response-head deadline.
func (x *exchange) dial() *client {
	c, err := dialProxy(x.s.proxy.Addr, x.to.headWait())
	if err != nil {
		x.ioFailed("dialing proxyto", err)
		return nil
	}
	x.res.client = c.c.LocalAddr().String()
	return c
}

// answer reads a response head and judges it against fault f (the fault of
// the request it answers). It returns the head when the exchange goes on
// (the status want, for a fault whose effect is clean or cut), and nil when
// the exchange is decided: an expected error response, or something
// unexpected.
func (x *exchange) answer(c *client, f fault, want int) *harness.WireHead {
	c.setIdle(x.to.headWait())
	h, err := harness.ReadWireHead(c.r)
	if err != nil {
		if isClosed(err) && !strings.HasPrefix(err.Error(), "incomplete head") {
			x.unexpected("closed without an answer", "%v", err)
			return nil
		}
		x.ioFailed("reading the response head", err)
		return nil
	}
	fi := f.info(x.res.up)
	code := h.StatusCode()
	errType, received := proxyStatus(h)
	if fi.effect == headError {
		if code == fi.status && errType == fi.errType && (fi.received == 0 || received == fi.received) {
			x.expected()
			return nil
		}
		want := fmt.Sprintf("%d %s", fi.status, fi.errType)
		x.unexpected("got "+describe(h)+", want "+want, "head %.300q%s", h.Raw, smallBody(c, h))
		return nil
	}
	if code == want {
		return h
	}
	if fi.alsoTimeout && code == 504 && errType == "http_response_timeout" {
		x.expected()
		return nil
	}
	x.unexpected(fmt.Sprintf("got %s, want %d", describe(h), want), "head %.300q%s", h.Raw, smallBody(c, h))
	return nil
}

// smallBody returns "; body …" for a short Content-Length body (an error
// response's one line), "" otherwise.
func smallBody(c *client, h *harness.WireHead) string {
	f, n, err := harness.ResponseFraming(h, "GET")
	if err != nil || f != harness.FrameLength || n > 1024 {
		return ""
	}
	var b strings.Builder
	harness.CopyBody(c.r, f, n, nil, &b)
	return fmt.Sprintf("; body %q", b.String())
}

// payload returns n bytes of the run's random data (a shared read-only
// buffer, at a random offset).
func (x *exchange) payload(n int) []byte {
	off := x.rng.IntN(len(randomData) - n + 1)
	return randomData[off : off+n]
}

// randomData is what uploads and tunnels send: random, so a misplaced or
// repeated block changes the checksum.
var randomData = func() []byte {
	b := make([]byte, 4<<20)
	r := rand.NewChaCha8([32]byte{'s', 'o', 'a', 'k'})
	r.Read(b)
	return b
}()

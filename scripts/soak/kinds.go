package main

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// kind is one sort of client exchange.
type kind uint8

const (
	kTunnelEcho kind = iota
	kTunnelHalfClose
	kTunnelEarly
	kGet
	kUpload
	kPipeline
	kAbortUpload
	kAbortDownload
	kPartialHead
	kGarbage
	numKinds
)

// kindInfo is one row of the kind table.
type kindInfo struct {
	name string
	// weight is the kind's share of the mixed population.
	weight int
	// faults are those an exchange of this kind may draw; none for the
	// kinds where the client itself misbehaves.
	faults []fault
	run    func(x *exchange)
}

var kinds [numKinds]kindInfo

func init() {
	kinds = [numKinds]kindInfo{
		kTunnelEcho:      {"tunnel-echo", 20, tunnelFaults, (*exchange).tunnelEcho},
		kTunnelHalfClose: {"tunnel-halfclose", 10, tunnelFaults, (*exchange).tunnelHalfClose},
		kTunnelEarly:     {"tunnel-early-fin", 10, headFaults, (*exchange).tunnelEarly},
		kGet:             {"get", 24, getFaults, (*exchange).get},
		kUpload:          {"upload", 16, sendFaults, (*exchange).upload},
		kPipeline:        {"pipeline", 8, sendFaults, (*exchange).pipeline},
		kAbortUpload:     {"abort-upload", 3, nil, (*exchange).abortUpload},
		kAbortDownload:   {"abort-download", 3, nil, (*exchange).abortDownload},
		kPartialHead:     {"partial-head", 3, nil, (*exchange).partialHead},
		kGarbage:         {"garbage", 3, nil, (*exchange).garbage},
	}
}

func (k kind) String() string { return kinds[k].name }

// kindNamed returns the kind called name.
func kindNamed(name string) (kind, bool) {
	for k := range numKinds {
		if kinds[k].name == name {
			return k, true
		}
	}
	return 0, false
}

// Body sizes. GETs use a fixed set so the pattern's checksums are computed
// once; a cut fault needs a body well past harness.CutAfter.
var (
	getSizes    = []int{0, 1, 1000, 16<<10 + 1, 64 << 10, 100_000, 256<<10 + 3, 1 << 20, 3<<20 + 7, 8 << 20}
	getWeights  = []int{3, 5, 20, 20, 15, 12, 10, 8, 4, 3}
	uploadSizes = []int{0, 1, 1000, 16 << 10, 64<<10 + 1, 256 << 10, 512<<10 + 5, 1 << 20}
	upWeights   = []int{3, 5, 20, 20, 20, 15, 10, 7}
	cutMin      = 3 * harness.CutAfter
)

// pick returns an index of weights, drawn by weight.
func (x *exchange) pick(weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := x.rng.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

func (x *exchange) getSize() int {
	if x.fixed > 0 {
		return x.fixed
	}
	for {
		n := getSizes[x.pick(getWeights)]
		if x.fi().effect != cut || n >= cutMin {
			return n
		}
	}
}

func (x *exchange) fi() faultInfo { return x.res.fault.info(x.res.up) }

// connectHead is a CONNECT to the echo origin routed as the exchange says.
func (x *exchange) connectHead() string {
	t := x.s.echo.Addr
	x.res.target = t
	return "CONNECT " + t + " HTTP/1.1\r\nHost: " + t + "\r\n" + x.s.headerLines(x.res.up, x.res.fault) + "\r\n"
}

// tunnel opens a tunnel; nil when the exchange is decided already.
func (x *exchange) tunnel() *client {
	c := x.dial()
	if c == nil {
		return nil
	}
	if err := c.writeString(x.connectHead()); err != nil {
		x.ioFailed("writing the CONNECT", err)
		c.Close()
		return nil
	}
	if x.answer(c, x.res.fault, 200) == nil {
		c.Close()
		return nil
	}
	c.setIdle(x.to.bodyIdle())
	return c
}

// judgeStream judges bytes that came back through a tunnel or as a body:
// got is what came (ending with err), want what should have. A cut fault
// must end early with a close, every byte before it right.
func (x *exchange) judgeStream(what string, got, want []byte, err error) {
	same := bytes.Equal(got, want[:min(len(got), len(want))])
	switch {
	case isHang(err):
		x.ioFailed(what, err)
	case !same:
		x.unexpected(what+": bytes differ", "%d of %d bytes came, not as sent", len(got), len(want))
	case x.fi().effect == cut && len(got) < len(want) && (err == nil || isClosed(err)):
		x.expected()
	case x.fi().effect == cut:
		x.unexpected(what+": the cut fault did not cut", "all %d bytes came, err %v", len(got), err)
	case err != nil:
		x.ioFailed(what, err)
	case len(got) != len(want):
		x.unexpected(what+": bytes missing", "%d of %d bytes came", len(got), len(want))
	default:
		x.ok()
	}
}

// tunnelEcho: CONNECT to the echo origin, then 1-3 rounds of sending bytes
// while reading them back.
func (x *exchange) tunnelEcho() {
	c := x.tunnel()
	if c == nil {
		return
	}
	defer c.Close()
	size := 1 + x.rng.IntN(256<<10)
	switch {
	case x.fixed > 0:
		size = x.fixed
	case x.fi().effect == cut:
		size = cutMin + x.rng.IntN(128<<10)
	}
	payload := x.payload(size)
	rounds := 1 + x.rng.IntN(3)
	got := make([]byte, 0, size)
	var err error
	for r := 0; r < rounds && err == nil; r++ {
		piece := payload[len(got) : len(got)+(size-len(got))/(rounds-r)]
		werr := make(chan error, 1)
		go func() { _, err := c.Write(piece); werr <- err }()
		buf := got[len(got) : len(got)+len(piece)]
		var n int
		n, err = io.ReadFull(c.r, buf)
		got = got[:len(got)+n]
		if err != nil {
			c.abort() // unblocks the writer
		}
		<-werr
	}
	x.judgeStream("echo", got, payload, err)
}

// tunnelHalfClose: send everything, shut down writing, then read the whole
// reply until the echo origin's FIN comes back.
func (x *exchange) tunnelHalfClose() {
	c := x.tunnel()
	if c == nil {
		return
	}
	defer c.Close()
	size := x.rng.IntN(1 << 20)
	if x.fi().effect == cut {
		size = cutMin + x.rng.IntN(512<<10)
	}
	payload := x.payload(size)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.closeWrite()
		}
		werr <- err
	}()
	got, err := c.readAllIdle()
	if err != nil {
		c.abort()
	}
	if we := <-werr; we != nil && isHang(we) && err == nil {
		err = we
	}
	x.judgeStream("half-closed echo", got, payload, err)
}

// tunnelEarly: the CONNECT and "hello <id>" in one write, then FIN at
// once, before the 200. Wanted: the 200, the upstream's target gets the
// bytes then the FIN (the echo origin only half-closes after that FIN), and
// the client gets the echo and EOF.
func (x *exchange) tunnelEarly() {
	c := x.dial()
	if c == nil {
		return
	}
	defer c.Close()
	msg := fmt.Sprintf("hello %d", x.id)
	if err := c.writeString(x.connectHead() + msg); err != nil {
		x.ioFailed("writing the CONNECT", err)
		return
	}
	if err := c.closeWrite(); err != nil {
		x.ioFailed("shutting down writing", err)
		return
	}
	if x.answer(c, x.res.fault, 200) == nil {
		return
	}
	c.setIdle(x.to.bodyIdle())
	got, err := c.readAllIdle()
	x.judgeStream("early data echo", got, []byte(msg), err)
}

// getHead is a GET of pathQuery on the origin, routed with fault f.
func (x *exchange) getHead(pathQuery string, f fault) string {
	x.res.target = x.s.originURL(pathQuery)
	x.targets = append(x.targets, x.res.target)
	return "GET " + x.res.target + " HTTP/1.1\r\nHost: " + x.s.origin.Addr + "\r\n" + x.s.headerLines(x.res.up, f) + "\r\n"
}

// getPath returns a /bytes or /chunked path for n pattern bytes.
func (x *exchange) getPath(n int) string {
	p := "/bytes"
	if x.rng.IntN(3) == 0 {
		p = "/chunked"
	}
	return fmt.Sprintf("%s?n=%d&id=%d", p, n, x.id)
}

// get: one GET of up to 8 MiB, every byte compared with the pattern.
func (x *exchange) get() {
	c := x.dial()
	if c == nil {
		return
	}
	defer c.Close()
	n := x.getSize()
	if err := c.writeString(x.getHead(x.getPath(n), x.res.fault)); err != nil {
		x.ioFailed("writing the request", err)
		return
	}
	h := x.answer(c, x.res.fault, 200)
	if h == nil {
		return
	}
	c.setIdle(x.to.bodyIdle())
	pc := newPatternCheck()
	got, err := readBody(c, h, "GET", pc)
	x.judgeBody(pc, got, int64(n), err)
}

// judgeBody is judgeStream for a pattern body checked as it came.
func (x *exchange) judgeBody(pc *patternCheck, got, n int64, err error) {
	switch {
	case isHang(err):
		x.ioFailed("reading the body", err)
	case !pc.ok():
		x.unexpected("body differs from the pattern", "%v of %d", pc, n)
	case x.fi().effect == cut && got < n && isClosed(err):
		x.expected()
	case x.fi().effect == cut:
		x.unexpected("body: the cut fault did not cut", "%d of %d bytes, err %v", got, n, err)
	case err != nil:
		x.ioFailed("reading the body", err)
	case got != n:
		x.unexpected("body length differs", "%d of %d bytes", got, n)
	default:
		x.ok()
	}
}

// uploadRequest builds a PUT, POST or PATCH of body to /up/<id>-<i>, with
// Content-Length or chunked, routed with fault f; it returns the request
// and the summary the origin answers.
func (x *exchange) uploadRequest(i int, body []byte, f fault) (method string, req []byte, want string) {
	method = []string{"PUT", "POST", "PATCH"}[x.rng.IntN(3)]
	chunked := x.rng.IntN(3) == 0
	// The path names the body's length and framing, for problem reports.
	path := fmt.Sprintf("/up/%d-%d?len=%d&chunked=%t", x.id, i, len(body), chunked)
	x.res.target = x.s.originURL(path)
	x.targets = append(x.targets, x.res.target)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n%s", method, x.res.target, x.s.origin.Addr, x.s.headerLines(x.res.up, f))
	if chunked {
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for off := 0; off < len(body); {
			k := min(len(body)-off, 1+x.rng.IntN(64<<10))
			harness.WriteChunked(&b, body[off:off+k])
			off += k
		}
		harness.WriteLastChunk(&b)
	} else {
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
		b.Write(body)
	}
	return method, b.Bytes(), harness.SummaryBody(method, path, body)
}

// upload: one PUT/POST/PATCH of up to 1 MiB; the origin's summary (length
// and sha256 of what it received) must match what was sent. Faulted uploads
// stay under 64 KiB, so proxyto has read the whole request when it answers
// the fault.
func (x *exchange) upload() {
	c := x.dial()
	if c == nil {
		return
	}
	defer c.Close()
	n := uploadSizes[x.pick(upWeights)]
	if x.res.fault != noFault {
		n = min(n, 64<<10)
	}
	method, req, want := x.uploadRequest(0, x.payload(n), x.res.fault)
	werr := make(chan error, 1)
	go func() { _, err := c.Write(req); werr <- err }()
	defer func() { c.abort(); <-werr }()
	h := x.answer(c, x.res.fault, 200)
	if h == nil {
		return
	}
	c.setIdle(x.to.bodyIdle())
	x.judgeSummary(c, h, method, want)
}

// judgeSummary reads the origin's summary of an upload (its length and
// sha256 as received) and compares it with want, the summary of what was
// sent.
func (x *exchange) judgeSummary(c *client, h *harness.WireHead, method, want string) {
	var got bytes.Buffer
	if _, err := readBody(c, h, method, &got); err != nil {
		x.ioFailed("reading the summary", err)
		return
	}
	if got.String() != want {
		x.unexpected("the origin got other bytes than sent", "summary %q, want %q", got.String(), want)
		return
	}
	x.ok()
}

// pipeline: 2-5 GETs and small uploads written at once on one connection;
// the answers must come in order, each verified. Only the last request may
// carry a fault.
func (x *exchange) pipeline() {
	c := x.dial()
	if c == nil {
		return
	}
	defer c.Close()
	type step struct {
		method string
		target string
		n      int    // GET: pattern bytes
		want   string // upload: the summary
	}
	k := 2 + x.rng.IntN(4)
	var all bytes.Buffer
	steps := make([]step, k)
	for i := range steps {
		f := noFault
		if i == k-1 {
			f = x.res.fault
		}
		if x.rng.IntN(2) == 0 {
			n := getSizes[x.rng.IntN(6)] // up to 100 KB
			all.WriteString(x.getHead(x.getPath(n), f))
			steps[i] = step{method: "GET", target: x.res.target, n: n}
			continue
		}
		method, req, want := x.uploadRequest(i, x.payload(x.rng.IntN(16<<10)), f)
		steps[i] = step{method: method, target: x.res.target, want: want}
		all.Write(req)
	}
	werr := make(chan error, 1)
	go func() { _, err := c.Write(all.Bytes()); werr <- err }()
	defer func() { c.abort(); <-werr }()
	for i, st := range steps {
		f := noFault
		if i == k-1 {
			f = x.res.fault
		}
		x.res.target = st.target
		h := x.answer(c, f, 200)
		if h == nil {
			if x.res.out == outUnexpected || x.res.out == outHang {
				x.res.reason = st.method + ": " + x.res.reason
				x.res.detail = fmt.Sprintf("request %d of %d: %s", i+1, k, x.res.detail)
			}
			return
		}
		c.setIdle(x.to.bodyIdle())
		if st.method == "GET" {
			pc := newPatternCheck()
			got, err := readBody(c, h, "GET", pc)
			x.judgeBody(pc, got, int64(st.n), err)
		} else {
			x.judgeSummary(c, h, st.method, st.want)
		}
		if x.res.out != outOK {
			x.res.detail = fmt.Sprintf("request %d of %d: %s", i+1, k, x.res.detail)
			return
		}
	}
	x.ok()
}

// abortUpload: a 1 MiB upload that stops part-way; the client closes (FIN
// or reset). Checked by the leak checks after the run.
func (x *exchange) abortUpload() {
	c := x.dial()
	if c == nil {
		return
	}
	const n = 1 << 20
	x.res.target = x.s.originURL(fmt.Sprintf("/up/%d", x.id))
	x.targets = append(x.targets, x.res.target)
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n",
		x.res.target, x.s.origin.Addr, x.s.headerLines(x.res.up, noFault), n)
	body := x.payload(n)[:x.rng.IntN(n/2)]
	_, err := c.Write(append([]byte(head), body...))
	time.Sleep(time.Duration(x.rng.IntN(50)) * time.Millisecond)
	x.hangup(c)
	if err != nil {
		x.ioFailed("writing the upload", err)
		return
	}
	x.ok()
}

// hangup closes c with a FIN or a reset, at random.
func (x *exchange) hangup(c *client) {
	if x.rng.IntN(2) == 0 {
		c.abort()
	} else {
		c.Close()
	}
}

// abortDownload: a GET of 8 MiB that the client abandons after up to 1 MiB
// (all verified).
func (x *exchange) abortDownload() {
	c := x.dial()
	if c == nil {
		return
	}
	defer x.hangup(c)
	// /bytes, not /chunked: the body is read raw, without its framing.
	if err := c.writeString(x.getHead(fmt.Sprintf("/bytes?n=%d&id=%d", 8<<20, x.id), noFault)); err != nil {
		x.ioFailed("writing the request", err)
		return
	}
	if x.answer(c, noFault, 200) == nil {
		return
	}
	c.setIdle(x.to.bodyIdle())
	pc := newPatternCheck()
	if _, err := io.CopyN(pc, c.r, int64(x.rng.IntN(1<<20))); err != nil {
		x.ioFailed("reading the body", err)
		return
	}
	if !pc.ok() {
		x.unexpected("body differs from the pattern", "%v", pc)
		return
	}
	x.ok()
}

// partialHead: part of a request head, then either the client goes away,
// or it waits: proxyto must close the connection (or answer 4xx) within
// --client-header-timeout.
func (x *exchange) partialHead() {
	c := x.dial()
	if c == nil {
		return
	}
	defer c.Close()
	full := x.getHead("/partial", noFault)
	part := full[:1+x.rng.IntN(len(full)-2)]
	if err := c.writeString(part); err != nil {
		x.ioFailed("writing half a head", err)
		return
	}
	if x.rng.IntN(2) == 0 {
		x.hangup(c)
		x.ok()
		return
	}
	x.wantRejectOrClose(c, "waiting for proxyto to drop a half head")
}

// wantRejectOrClose wants proxyto to close c, or answer 4xx and close,
// within --client-header-timeout plus slack.
func (x *exchange) wantRejectOrClose(c *client, what string) {
	c.setIdle(x.to.clientWait())
	got, err := c.readAllIdle()
	switch {
	case isHang(err):
		x.ioFailed(what, err)
	case len(got) == 0:
		x.expected()
	default:
		h, perr := harness.ParseWireHead(got)
		if perr != nil || h.StatusCode()/100 != 4 {
			x.unexpected("answered other than 4xx", "%.200q", got)
			return
		}
		if t, _ := proxyStatus(h); h.StatusCode() == 400 && t != "http_request_error" {
			x.unexpected("400 without http_request_error", "%.200q", got)
			return
		}
		x.expected()
	}
}

// garbageInputs are requests proxyto must refuse (400 or a close).
var garbageInputs = []string{
	"\x00\x01\x02\xff\xfe garbage \x80\x81\r\n\r\n",
	"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + string(make([]byte, 64)) + "\r\n\r\n",
	"CONNECT 127.0.0.1:1\r\n\r\n",
	"CON(NECT 127.0.0.1:1 HTTP/1.1\r\n\r\n",
	"GET http://127.0.0.1:1/ HTTP/1.1\r\nX-Proxy-To 127.0.0.1:1\r\n\r\n",
	"GET http://127.0.0.1:1/ HTTP/1.1\r\nX-A: b\x00c\r\n\r\n",
	"GET http://127.0.0.1:1/ HTTP/1.1\r\nX-Proxy-To : 127.0.0.1:1\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"POST http://127.0.0.1:1/ HTTP/1.1\r\nX-Proxy-To: 127.0.0.1:1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET http://127.0.0.1:1/ HTTP/1.1\r\nX-Proxy-To: ftp://127.0.0.1:1\r\n\r\n",
}

// garbage: bytes that are not an acceptable request; wanted: 400
// http_request_error or a close, never anything reaching an upstream.
func (x *exchange) garbage() {
	c := x.dial()
	if c == nil {
		return
	}
	defer c.Close()
	in := garbageInputs[x.rng.IntN(len(garbageInputs))]
	if err := c.writeString(in); err != nil {
		x.ioFailed("writing garbage", err)
		return
	}
	if x.rng.IntN(2) == 0 {
		c.closeWrite()
	}
	x.wantRejectOrClose(c, "waiting for proxyto to refuse garbage")
}

package itest

// --compress through the real binary (docs/behaviour.md, "Compression"):
// which responses are gzipped, what their heads become, both client
// framings, never a tunnel, and bounded memory for a large body.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// words is text that compresses as prose does (about 3:1).
type words struct {
	left int64
	x    uint64
	buf  []byte
}

var vocabulary = strings.Fields("the proxy carries each request through an upstream named in its header " +
	"while the gateway counts bytes and keeps memory bounded for every tunnel and plain response " +
	"compression streams gzip members to clients that accept them")

func newWords(n int64) *words { return &words{left: n, x: 88172645463325252} }

func (w *words) Read(p []byte) (int, error) {
	if w.left <= 0 {
		return 0, io.EOF
	}
	for len(w.buf) < len(p) && int64(len(w.buf)) < w.left {
		w.x ^= w.x << 13
		w.x ^= w.x >> 7
		w.x ^= w.x << 17
		w.buf = append(append(w.buf, vocabulary[w.x%uint64(len(vocabulary))]...), ' ')
	}
	n := copy(p, w.buf)
	if int64(n) > w.left {
		n = int(w.left)
	}
	w.buf = w.buf[:copy(w.buf, w.buf[n:])]
	w.left -= int64(n)
	return n, nil
}

func wordsText(n int) string {
	b, _ := io.ReadAll(newWords(int64(n)))
	return string(b)
}

// gzRow is one response of the compression table: the origin answers the
// request (with reqLines) with status, lines and a body of bodyLen bytes of
// text, delimited by framing ("length", "chunked", "close").
type gzRow struct {
	name     string
	method   string
	minor    int // the client's HTTP/1.minor
	reqLines []string
	status   string
	lines    []string
	framing  string
	bodyLen  int
	gzip     bool
}

func TestCompressRules(t *testing.T) {
	const ae = "Accept-Encoding: gzip"
	html := "Content-Type: text/html; charset=utf-8"
	rows := []gzRow{
		{"gzip, html, 4 KiB", "GET", 1, []string{ae}, "200 OK", []string{html}, "length", 4096, true},
		{"GZIP in capitals", "GET", 1, []string{"Accept-Encoding: GZIP"}, "200 OK", []string{html}, "length", 4096, true},
		{"x-gzip", "GET", 1, []string{"Accept-Encoding: x-gzip"}, "200 OK", []string{html}, "length", 4096, true},
		{"br, gzip;q=0.5", "GET", 1, []string{"Accept-Encoding: br, gzip;q=0.5"}, "200 OK", []string{html}, "length", 4096, true},
		{"*", "GET", 1, []string{"Accept-Encoding: *"}, "200 OK", []string{html}, "length", 4096, true},
		{"gzip;q=0", "GET", 1, []string{"Accept-Encoding: gzip;q=0"}, "200 OK", []string{html}, "length", 4096, false},
		{"*;q=0", "GET", 1, []string{"Accept-Encoding: *;q=0"}, "200 OK", []string{html}, "length", 4096, false},
		{"gzip;q=0 beside *", "GET", 1, []string{"Accept-Encoding: *, gzip;q=0"}, "200 OK", []string{html}, "length", 4096, false},
		{"identity only", "GET", 1, []string{"Accept-Encoding: identity"}, "200 OK", []string{html}, "length", 4096, false},
		{"no Accept-Encoding", "GET", 1, nil, "200 OK", []string{html}, "length", 4096, false},
		{"application/json", "GET", 1, []string{ae}, "200 OK", []string{"Content-Type: application/json"}, "length", 4096, true},
		{"application/javascript", "GET", 1, []string{ae}, "200 OK", []string{"Content-Type: application/javascript"}, "length", 4096, true},
		{"application/xml", "GET", 1, []string{ae}, "200 OK", []string{"Content-Type: application/xml"}, "length", 4096, true},
		{"image/svg+xml", "GET", 1, []string{ae}, "200 OK", []string{"Content-Type: image/svg+xml"}, "length", 4096, true},
		{"text/plain", "GET", 1, []string{ae}, "200 OK", []string{"Content-Type: text/plain"}, "length", 4096, true},
		{"image/png", "GET", 1, []string{ae}, "200 OK", []string{"Content-Type: image/png"}, "length", 4096, false},
		{"octet-stream", "GET", 1, []string{ae}, "200 OK", []string{"Content-Type: application/octet-stream"}, "length", 4096, false},
		{"no Content-Type", "GET", 1, []string{ae}, "200 OK", nil, "length", 4096, false},
		{"206", "GET", 1, []string{ae, "Range: bytes=0-4095"}, "206 Partial Content", []string{html, "Content-Range: bytes 0-4095/10000"}, "length", 4096, false},
		{"HEAD", "HEAD", 1, []string{ae}, "200 OK", []string{html}, "length", 4096, false},
		{"no-transform", "GET", 1, []string{ae}, "200 OK", []string{html, "Cache-Control: public, no-transform"}, "length", 4096, false},
		{"1023 bytes", "GET", 1, []string{ae}, "200 OK", []string{html}, "length", 1023, false},
		{"1024 bytes", "GET", 1, []string{ae}, "200 OK", []string{html}, "length", 1024, true},
		{"unknown length, chunked, small", "GET", 1, []string{ae}, "200 OK", []string{html}, "chunked", 100, true},
		{"unknown length, chunked, large", "GET", 1, []string{ae}, "200 OK", []string{html}, "chunked", 300 << 10, true},
		{"unknown length, until close", "GET", 1, []string{ae}, "200 OK", []string{html}, "close", 200 << 10, true},
		{"already encoded", "GET", 1, []string{ae}, "200 OK", []string{html, "Content-Encoding: br"}, "length", 4096, false},
		{"204", "GET", 1, []string{ae}, "204 No Content", []string{html}, "none", 0, false},
		{"304", "GET", 1, []string{ae}, "304 Not Modified", []string{html, "ETag: \"v1\""}, "none", 0, false},
		{"HTTP/1.0 client", "GET", 0, []string{ae}, "200 OK", []string{html}, "length", 64 << 10, true},
		{"HTTP/1.0 client, chunked upstream", "GET", 0, []string{ae}, "200 OK", []string{html}, "chunked", 64 << 10, true},
		{"existing Vary", "GET", 1, []string{ae}, "200 OK", []string{html, "Vary: Origin"}, "length", 4096, true},
		{"Vary naming it already", "GET", 1, []string{ae}, "200 OK", []string{html, "Vary: accept-encoding"}, "length", 4096, true},
	}
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--compress")
	// Lines every response carries, which must arrive byte for byte.
	extra := []string{"X-Spaced:  two  spaces ", "Cache-Control: max-age=60", "Set-Cookie: a=b; Path=/"}
	origin.Handle("/gz/", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		i, _ := strconv.Atoi(strings.TrimPrefix(x.URL.Path, "/gz/"))
		r := rows[i]
		var b strings.Builder
		fmt.Fprintf(&b, "HTTP/1.1 %s\r\n", r.status)
		for _, l := range append(append([]string(nil), r.lines...), extra...) {
			b.WriteString(l + "\r\n")
		}
		body := wordsText(r.bodyLen)
		switch r.framing {
		case "length":
			fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", r.bodyLen)
			if x.Method != "HEAD" {
				b.WriteString(body)
			}
		case "chunked":
			b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
			for len(body) > 0 {
				n := min(len(body), 1000)
				fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
				body = body[n:]
			}
			b.WriteString("0\r\n\r\n")
		case "close":
			b.WriteString("\r\n" + body)
		default:
			b.WriteString("\r\n")
		}
		x.WriteString(b.String())
		return r.framing != "close"
	})
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			c := httpDial(t, p)
			path := "/gz/" + strconv.Itoa(i)
			lines := append([]string{"Host: " + origin.Addr, "X-Proxy-To: " + up.Addr}, r.reqLines...)
			c.WriteString(httpHead(r.method+" "+origin.URL(path)+" HTTP/1."+strconv.Itoa(r.minor), lines...))
			resp := httpReadResp(t, c, r.method)
			checkCompressed(t, r, resp, extra)
			if r.minor == 1 {
				// Kept alive whatever the framing was: the next request on
				// the connection is answered.
				c.WriteString(httpHead("GET "+origin.URL("/summary")+" HTTP/1.1", "Host: "+origin.Addr, "X-Proxy-To: "+up.Addr))
				if next := httpReadResp(t, c, "GET"); next.Status != 200 {
					t.Fatalf("the next request on the connection: %q", next.Head.Line)
				}
			}
		})
	}
	s := scrapeMetrics(t, p)
	gz := 0
	for _, r := range rows {
		if r.gzip {
			gz++
		}
	}
	if v := s.value(t, "proxyto_compression_responses_total", map[string]string{"verdict": "compress"}); int(v) != gz {
		t.Errorf("proxyto_compression_responses_total{verdict=compress} = %v, want %d", v, gz)
	}
	if v := s.value(t, "proxyto_compression_responses_total", map[string]string{"verdict": "not_text"}); v < 3 {
		t.Errorf("proxyto_compression_responses_total{verdict=not_text} = %v, want 3 or more", v)
	}
}

// checkCompressed checks one response of the table against its row.
func checkCompressed(t *testing.T, r gzRow, resp *harness.WireResponse, extra []string) {
	t.Helper()
	h := resp.Head
	want := wordsText(r.bodyLen)
	if r.method == "HEAD" || r.framing == "none" {
		want = ""
	}
	for _, l := range extra {
		if !bytes.Contains(h.Raw, []byte("\r\n"+l+"\r\n")) {
			t.Errorf("header line %q did not arrive byte for byte: %q", l, h.Raw)
		}
	}
	if !r.gzip {
		if h.Has("Content-Encoding") && !strings.Contains(strings.Join(r.lines, "\n"), "Content-Encoding") {
			t.Fatalf("compressed against the rules: %q", h.Raw)
		}
		if string(resp.Body) != want {
			t.Fatalf("body changed: %d bytes, want %d", len(resp.Body), len(want))
		}
		if r.framing == "length" && h.Get("Content-Length") != strconv.Itoa(r.bodyLen) {
			t.Errorf("Content-Length %q, want %d", h.Get("Content-Length"), r.bodyLen)
		}
		return
	}
	if h.Get("Content-Encoding") != "gzip" || h.Has("Content-Length") {
		t.Fatalf("want Content-Encoding: gzip and no Content-Length: %q", h.Raw)
	}
	vary := strings.ToLower(strings.Join(h.Values("Vary"), ","))
	if strings.Count(vary, "accept-encoding") != 1 {
		t.Errorf("Vary %q should name Accept-Encoding once", vary)
	}
	for _, l := range r.lines {
		if strings.HasPrefix(l, "Vary:") && !bytes.Contains(h.Raw, []byte(l+"\r\n")) {
			t.Errorf("the origin's %q was not kept", l)
		}
	}
	if r.minor == 0 {
		if h.Has("Transfer-Encoding") || !h.HasToken("Connection", "close") || resp.Framing != harness.FrameClose {
			t.Errorf("HTTP/1.0 client: want the body until close and Connection: close: %q (%v)", h.Raw, resp.Framing)
		}
	} else if !h.HasToken("Transfer-Encoding", "chunked") || strings.Count(strings.ToLower(string(h.Raw)), "transfer-encoding") != 1 {
		t.Errorf("HTTP/1.1 client: want one Transfer-Encoding: chunked: %q", h.Raw)
	}
	zr, err := gzip.NewReader(bytes.NewReader(resp.Body))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || string(got) != want {
		t.Fatalf("gunzipped %d bytes (%v), want the origin's %d", len(got), err, len(want))
	}
}

// TestCompressNeverInTunnels: a CONNECT tunnel carries an origin's
// compressible response unchanged.
func TestCompressNeverInTunnels(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	body := wordsText(8192)
	origin.Handle("/text", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		x.WriteString(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		return true
	})
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--compress")
	c, _ := harness.Tunnel(t, p.Addr, origin.Addr, up.Addr)
	c.WriteString(httpHead("GET /text HTTP/1.1", "Host: "+origin.Addr, "Accept-Encoding: gzip"))
	resp := httpReadResp(t, c, "GET")
	if resp.Head.Has("Content-Encoding") || string(resp.Body) != body {
		t.Fatalf("the tunnel's response changed: %q", resp.Head.Raw)
	}
}

// TestCompressLargeBodyBoundedMemory: a 64 MiB text body is gzipped on its
// way to a client that first reads slowly: proxyto's RSS stays bounded
// (the encoder holds 32 KiB; the relay's queue bounds the rest), and the
// client gets every byte.
func TestCompressLargeBodyBoundedMemory(t *testing.T) {
	const size = 64 << 20
	origin := harness.StartWireOrigin(t)
	origin.Handle("/big", func(x *harness.OriginExchange) bool {
		x.ReadBody()
		x.WriteString(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", size))
		bw := bufio.NewWriterSize(x.Conn, 64<<10)
		_, _ = io.Copy(bw, newWords(size))
		return bw.Flush() == nil
	})
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--compress")
	base := p.MustRSS(t)
	peak := httpRSSWatch(t, p)

	c := httpDial(t, p)
	c.WriteString(httpGetVia(origin, "/big", up.Addr, "Accept-Encoding: gzip"))
	h, err := harness.ReadWireHead(c.R)
	if err != nil || h.Get("Content-Encoding") != "gzip" {
		t.Fatalf("head %v: %v", h, err)
	}
	// Slowly at first, so that the origin runs ahead and the queues fill.
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	var sum string
	var n int64
	var gzErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		zr, err := gzip.NewReader(pr)
		if err != nil {
			gzErr = err
			_ = pr.CloseWithError(err)
			return
		}
		hs := sha256.New()
		n, gzErr = io.Copy(hs, zr)
		sum = hex.EncodeToString(hs.Sum(nil))
		_, _ = io.Copy(io.Discard, pr)
	}()
	slow := &slowWriter{w: pw, first: 2 << 20}
	if _, _, err := harness.CopyBody(c.R, harness.FrameChunked, 0, nil, slow); err != nil {
		t.Fatalf("reading the chunked body: %v", err)
	}
	_ = pw.Close()
	wg.Wait()
	grew := peak() - base
	ws := sha256.New()
	_, _ = io.Copy(ws, newWords(size))
	if gzErr != nil || n != size || sum != hex.EncodeToString(ws.Sum(nil)) {
		t.Fatalf("gunzipped %d bytes (%v), want the origin's %d intact", n, gzErr, size)
	}
	t.Logf("64 MiB gzipped to %d bytes; RSS %d KiB at start, grew by %d KiB at most", slow.n, base>>10, grew>>10)
	if grew > 24<<20 {
		t.Errorf("RSS grew by %d KiB while compressing a 64 MiB body, want under 24 MiB", grew>>10)
	}
}

// slowWriter passes writes on, sleeping a little per write for the first
// bytes.
type slowWriter struct {
	w     io.Writer
	n     int64
	first int64
}

func (s *slowWriter) Write(p []byte) (int, error) {
	if s.n < s.first {
		time.Sleep(time.Millisecond)
	}
	s.n += int64(len(p))
	return s.w.Write(p)
}

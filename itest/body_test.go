package itest

// Bodies through plain-HTTP forwarding (docs/behaviour.md, "Talking to the upstream"): Content-Length and chunked
// both ways (trailers included), until-close responses, no body for HEAD,
// 1xx, 204 and 304, Expect: 100-continue, and 1 GiB each way in bounded
// memory.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// TestHTTPRequestBodies: a Content-Length body keeps its length and a chunked
// body stays chunked, trailers included; the origin gets the exact payload.
func TestHTTPRequestBodies(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)
	payload, _ := io.ReadAll(harness.PatternReader(200_000))

	t.Run("content-length", func(t *testing.T) {
		_, r := httpRoundTrip(t, p, "POST", httpHead("POST "+origin.URL("/upload/cl")+" HTTP/1.1",
			"Host: "+origin.Addr, "X-Proxy-To: "+creds+up.Addr,
			fmt.Sprintf("Content-Length: %d", len(payload)), "Content-Type: application/octet-stream"), string(payload))
		httpWantOK(t, r, harness.SummaryBody("POST", "/upload/cl", payload))
		h := up.Heads()[len(up.Heads())-1].Head
		if got := h.Values("Content-Length"); !slices.Equal(got, []string{fmt.Sprint(len(payload))}) {
			t.Errorf("Content-Length at the upstream %q, want [%d]", got, len(payload))
		}
		if h.Has("Transfer-Encoding") {
			t.Errorf("Transfer-Encoding added upstream: %q", h.Raw)
		}
	})

	t.Run("chunked with trailers", func(t *testing.T) {
		before := len(origin.Requests())
		c := httpDial(t, p)
		c.WriteString(httpHead("POST "+origin.URL("/upload/chunked")+" HTTP/1.1",
			"Host: "+origin.Addr, "X-Proxy-To: "+creds+up.Addr,
			"Transfer-Encoding: chunked", "Content-Type: application/octet-stream"))
		var body bytes.Buffer
		for off := 0; off < len(payload); off += 7001 {
			end := min(off+7001, len(payload))
			harness.WriteChunked(&body, payload[off:end])
		}
		harness.WriteLastChunk(&body, "X-Req-Trailer: t1", "X-Req-Sum: "+harness.SHA256Hex(payload))
		c.Write(body.Bytes())
		r := httpReadResp(t, c, "POST")
		httpWantOK(t, r, harness.SummaryBody("POST", "/upload/chunked", payload))

		h := up.Heads()[len(up.Heads())-1].Head
		if got := h.Values("Transfer-Encoding"); !slices.Equal(got, []string{"chunked"}) {
			t.Errorf("Transfer-Encoding at the upstream %q, want [chunked]", got)
		}
		if h.Has("Content-Length") {
			t.Errorf("Content-Length added upstream: %q", h.Raw)
		}
		// The origin records a request after answering it: wait for it.
		reqs := origin.WaitRequests(before+1, 30*time.Second)
		last := reqs[len(reqs)-1]
		if last.Framing != harness.FrameChunked {
			t.Errorf("origin got a %v body, want chunked", last.Framing)
		}
		if want := []string{"X-Req-Trailer: t1", "X-Req-Sum: " + harness.SHA256Hex(payload)}; !slices.Equal(last.Trailers, want) {
			t.Errorf("trailers at the origin %q, want %q", last.Trailers, want)
		}
	})
	noSecretInLogs(t, p)
}

// TestHTTPResponseBodies: Content-Length, chunked (with trailers) and
// until-close responses arrive intact and keep their framing; after an
// until-close body proxyto closes the client connection.
func TestHTTPResponseBodies(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)
	const n = 300_000

	for _, tc := range []struct {
		path     string
		framing  harness.Framing
		trailers []string
	}{
		{fmt.Sprintf("/bytes?n=%d", n), harness.FrameLength, nil},
		{fmt.Sprintf("/chunked?n=%d", n), harness.FrameChunked, []string{"X-Checksum: " + harness.PatternSHA256(n), "X-Trailer-Two: 2"}},
		{fmt.Sprintf("/close?n=%d", n), harness.FrameClose, nil},
	} {
		t.Run(tc.framing.String(), func(t *testing.T) {
			c, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, tc.path, creds+up.Addr))
			if r.Status != 200 {
				t.Fatalf("status line %q, want 200", r.Head.Line)
			}
			if r.Framing != tc.framing {
				t.Errorf("response framing %v, want %v (head %q)", r.Framing, tc.framing, r.Head.Raw)
			}
			if r.BodyLen != n || r.BodySHA256 != harness.PatternSHA256(n) {
				t.Errorf("body: %d bytes sha %s, want %d bytes sha %s", r.BodyLen, r.BodySHA256, n, harness.PatternSHA256(n))
			}
			if !slices.Equal(r.Trailers, tc.trailers) {
				t.Errorf("trailers %q, want %q", r.Trailers, tc.trailers)
			}
			if tc.framing == harness.FrameChunked && r.Head.Has("Trailer") {
				t.Errorf("hop-by-hop Trailer field reached the client: %q", r.Head.Raw)
			}
			if tc.framing == harness.FrameClose {
				return // ReadWireResponse read to EOF: the connection is closed
			}
			// The connection still serves.
			c.WriteString(httpGetVia(origin, "/after", creds+up.Addr))
			httpWantOK(t, httpReadResp(t, c, "GET"), harness.SummaryBody("GET", "/after", nil))
		})
	}
	noSecretInLogs(t, p)
}

// TestHTTPNoBodyResponses: answers to HEAD, 1xx, 204 and 304 have no body
// (docs/behaviour.md, "Talking to the upstream"). All go on one kept-alive connection, so a body proxyto wrongly
// waited for, or stray bytes it passed on, would spoil the next response.
func TestHTTPNoBodyResponses(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)
	c := httpDial(t, p)
	xpt := creds + up.Addr

	send := func(method, path string) {
		c.WriteString(httpHead(method+" "+origin.URL(path)+" HTTP/1.1", "Host: "+origin.Addr, "X-Proxy-To: "+xpt))
	}

	send("HEAD", "/bytes?n=5000")
	r := httpReadResp(t, c, "HEAD")
	if r.Status != 200 || r.Head.Get("Content-Length") != "5000" || r.BodyLen != 0 {
		t.Errorf("HEAD /bytes: %q Content-Length %q, %d body bytes; want 200, 5000, none", r.Head.Line, r.Head.Get("Content-Length"), r.BodyLen)
	}

	send("HEAD", "/chunked?n=5000")
	r = httpReadResp(t, c, "HEAD")
	if r.Status != 200 || r.BodyLen != 0 {
		t.Errorf("HEAD /chunked: %q, %d body bytes; want 200, none", r.Head.Line, r.BodyLen)
	}

	send("GET", "/status/204")
	r = httpReadResp(t, c, "GET")
	if r.Status != 204 || r.Head.Get("X-Status") != "204" {
		t.Errorf("204: got %q", r.Head.Raw)
	}

	send("GET", "/status/304")
	r = httpReadResp(t, c, "GET")
	if r.Status != 304 || r.Head.Get("Content-Length") != "1234" {
		t.Errorf("304: got %q (want its Content-Length: 1234 kept and no body)", r.Head.Raw)
	}

	send("GET", "/early-hints")
	final, info, err := harness.ReadFinalWireResponse(c.R, "GET")
	if err != nil {
		t.Fatalf("reading /early-hints: %v", err)
	}
	if len(info) != 1 || info[0].Status != 103 || info[0].Head.Get("Link") != "</style.css>; rel=preload" {
		var got []string
		for _, i := range info {
			got = append(got, string(i.Head.Raw))
		}
		t.Errorf("1xx before the final answer: %q, want one 103 with its Link", got)
	}
	httpWantOK(t, final, harness.SummaryBody("GET", "/early-hints", nil))

	send("GET", "/bytes?n=10")
	r = httpReadResp(t, c, "GET")
	if r.Status != 200 || r.BodySHA256 != harness.PatternSHA256(10) {
		t.Errorf("last request on the connection: %q, body %q", r.Head.Line, r.Body)
	}
	noSecretInLogs(t, p)
}

// TestHTTPExpectContinue: a client that waits for 100 Continue before sending
// its body gets one (from proxyto or relayed from the origin), and the body
// and Expect reach the origin.
func TestHTTPExpectContinue(t *testing.T) {
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)
	body := strings.Repeat("expect-continue-body;", 500)

	c := httpDial(t, p)
	c.WriteString(httpHead("PUT "+origin.URL("/continue")+" HTTP/1.1",
		"Host: "+origin.Addr, "X-Proxy-To: "+creds+up.Addr,
		fmt.Sprintf("Content-Length: %d", len(body)), "Expect: 100-continue"))
	// The body is not sent until a 100 arrives.
	first, err := harness.ReadWireResponse(c.R, "PUT")
	if err != nil {
		t.Fatalf("waiting for 100 Continue: %v", err)
	}
	if first.Status != 100 {
		t.Fatalf("first answer %q, want 100 Continue before the body is sent", first.Head.Line)
	}
	c.WriteString(body)
	r := httpReadResp(t, c, "PUT")
	httpWantOK(t, r, harness.SummaryBody("PUT", "/continue", []byte(body)))
	h := up.Heads()[len(up.Heads())-1].Head
	if !h.HasToken("Expect", "100-continue") {
		t.Errorf("Expect: 100-continue did not reach the upstream: %q", h.Raw)
	}
	noSecretInLogs(t, p)
}

// httpGiB is the size of the large transfers.
const httpGiB = 1 << 30

// httpRSSSlack is how much proxyto's RSS may grow over its baseline while
// streaming a 1 GiB body.
const httpRSSSlack = 64 << 20

// TestHTTPLargeUpload: a 1 GiB Content-Length request body streams through
// with its sha256 intact while proxyto's RSS stays within httpRSSSlack of its
// baseline (bodies are never buffered whole).
func TestHTTPLargeUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB transfer skipped in -short mode")
	}
	if os.Getenv("PROXYTO_ITEST_RACE") == "1" {
		t.Skip("RSS bounds do not hold for a -race build of proxyto")
	}
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)

	// Warm up (pool, buffers) so the baseline is a serving process.
	_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/warm", creds+up.Addr))
	httpWantOK(t, r, harness.SummaryBody("GET", "/warm", nil))
	base := p.MustRSS(t)
	stop := httpRSSWatch(t, p)

	c := httpDial(t, p)
	c.SetDeadline(10 * time.Minute)
	c.WriteString(httpHead("POST "+origin.URL("/upload/big")+" HTTP/1.1",
		"Host: "+origin.Addr, "X-Proxy-To: "+creds+up.Addr, fmt.Sprintf("Content-Length: %d", httpGiB)))
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(c.Conn, harness.PatternReader(httpGiB))
		errc <- err
	}()
	r = httpReadResp(t, c, "POST")
	if err := <-errc; err != nil {
		t.Fatalf("sending the body: %v", err)
	}
	peak := stop()
	httpWantOK(t, r, fmt.Sprintf("POST /upload/big len=%d sha=%s\n", httpGiB, harness.PatternSHA256(httpGiB)))
	t.Logf("proxyto RSS: baseline %d MiB, peak %d MiB", base>>20, peak>>20)
	if peak-base > httpRSSSlack {
		t.Errorf("proxyto RSS grew by %d MiB during a 1 GiB upload (limit %d MiB)", (peak-base)>>20, httpRSSSlack>>20)
	}
}

// TestHTTPLargeDownload: a 1 GiB Content-Length response and a 1 GiB chunked
// one stream through intact while proxyto's RSS stays bounded.
func TestHTTPLargeDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB transfer skipped in -short mode")
	}
	if os.Getenv("PROXYTO_ITEST_RACE") == "1" {
		t.Skip("RSS bounds do not hold for a -race build of proxyto")
	}
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)
	_, r := httpRoundTrip(t, p, "GET", httpGetVia(origin, "/warm", creds+up.Addr))
	httpWantOK(t, r, harness.SummaryBody("GET", "/warm", nil))
	base := p.MustRSS(t)
	wantSHA := harness.PatternSHA256(httpGiB)

	for _, path := range []string{fmt.Sprintf("/bytes?n=%d", httpGiB), fmt.Sprintf("/chunked?n=%d", httpGiB)} {
		t.Run(strings.TrimPrefix(path[:strings.IndexByte(path, '?')], "/"), func(t *testing.T) {
			stop := httpRSSWatch(t, p)
			c := httpDial(t, p)
			c.SetDeadline(10 * time.Minute)
			c.WriteString(httpGetVia(origin, path, creds+up.Addr))
			r := httpReadResp(t, c, "GET")
			peak := stop()
			if r.Status != 200 || r.BodyLen != httpGiB || r.BodySHA256 != wantSHA {
				t.Fatalf("got %q with %d bytes sha %s; want 200, %d bytes sha %s", r.Head.Line, r.BodyLen, r.BodySHA256, httpGiB, wantSHA)
			}
			t.Logf("proxyto RSS: baseline %d MiB, peak %d MiB", base>>20, peak>>20)
			if peak-base > httpRSSSlack {
				t.Errorf("proxyto RSS grew by %d MiB during a 1 GiB download (limit %d MiB)", (peak-base)>>20, httpRSSSlack>>20)
			}
		})
	}
}

package harness

// These tests prove the harness itself works, without proxyto: curl straight
// through WireUpstream, squid and tinyproxy, and the raw origins through
// WireUpstream's relay.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestBuildProxytoHelpListsFlagsTheTestsUse(t *testing.T) {
	bin := BuildProxyto(t)
	flags := []string{"--listen", "--admin", "--log-format", "--max-header-bytes",
		"--response-header-timeout", "--tunnel-idle-timeout", "--dial-timeout"}
	// "proxyto --help" (no command) shows the gateway's flags too, grouped,
	// and still names the other commands.
	for _, args := range [][]string{{"run", "--help"}, {"--help"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("proxyto %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		want := flags
		if len(args) == 1 {
			want = append(slices.Clone(flags), "Listeners:", "Upstream:", "Timeouts:", "Limits:", "Security:",
				"Observability:", "healthcheck", "version")
		}
		for _, f := range want {
			if !strings.Contains(string(out), f) {
				t.Errorf("proxyto %s does not mention %s", strings.Join(args, " "), f)
			}
		}
	}
}

func TestCurlThroughTestUpstream(t *testing.T) {
	tlsOrigin := StartTLSOrigin(t)
	httpOrigin := StartWireOrigin(t)
	up := StartWireUpstream(t, WireUpstreamOptions{Auth: true, User: "alice", Pass: "s3cret"})

	r := Curl(t, "-sS", "--cacert", tlsOrigin.CAFile, "-x", up.ProxyURL(), "https://"+tlsOrigin.Addr+"/small")
	if r.Code != 0 || r.Stdout != string(SmallBody) {
		t.Fatalf("CONNECT via TestUpstream: code %d stderr %q body %d bytes", r.Code, r.Stderr, len(r.Stdout))
	}
	head := string(up.LastHead())
	if !strings.HasPrefix(head, "CONNECT "+tlsOrigin.Addr+" HTTP/1.1\r\n") ||
		!strings.Contains(head, "\r\nProxy-Authorization: "+BasicAuth("alice", "s3cret")+"\r\n") {
		t.Fatalf("recorded head:\n%s", head)
	}

	// Two absolute-form requests in one curl run share one kept-alive connection.
	before := up.Conns()
	r = Curl(t, "-sS", "-x", up.ProxyURL(), "http://"+httpOrigin.Addr+"/bytes?n=100000", "http://"+httpOrigin.Addr+"/small")
	want := PatternString(100000) + string(SmallBody)
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("plain via TestUpstream: code %d stderr %q body %d bytes (want %d)", r.Code, r.Stderr, len(r.Stdout), len(want))
	}
	if got := up.Conns() - before; got != 1 {
		t.Fatalf("TestUpstream accepted %d connections for 2 kept-alive requests, want 1", got)
	}

	// Wrong password: 407.
	r = Curl(t, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", "http://alice:wrong@"+up.Addr, "http://"+httpOrigin.Addr+"/small")
	if r.Stdout != "407" {
		t.Fatalf("wrong password: got %q (%s), want 407", r.Stdout, r.Stderr)
	}
}

// PatternString is the first n pattern bytes as a string (test helper).
func PatternString(n int64) string {
	b, _ := io.ReadAll(PatternReader(n))
	return string(b)
}

func TestCurlThroughSquid(t *testing.T) {
	tlsOrigin := StartTLSOrigin(t)
	httpOrigin := StartWireOrigin(t)
	sq := StartSquid(t, "alice", "s3cret")
	r := Curl(t, "-sS", "--cacert", tlsOrigin.CAFile, "-x", sq.ProxyURL("alice", "s3cret"), "https://"+tlsOrigin.Addr+"/small")
	if r.Code != 0 || r.Stdout != string(SmallBody) {
		t.Fatalf("CONNECT via squid: code %d stderr %q body %q", r.Code, r.Stderr, r.Stdout)
	}
	r = Curl(t, "-sS", "-x", sq.ProxyURL("alice", "s3cret"), "http://"+httpOrigin.Addr+"/small")
	if r.Code != 0 || r.Stdout != string(SmallBody) {
		t.Fatalf("plain via squid: code %d stderr %q", r.Code, r.Stderr)
	}
	r = Curl(t, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", sq.ProxyURL("alice", "nope"), "http://"+httpOrigin.Addr+"/small")
	if r.Stdout != "407" {
		t.Fatalf("squid with a wrong password: got %q, want 407", r.Stdout)
	}
}

func TestCurlThroughTinyproxy(t *testing.T) {
	tlsOrigin := StartTLSOrigin(t)
	httpOrigin := StartWireOrigin(t)
	tp := StartTinyproxy(t, "alice", "s3cret")
	r := Curl(t, "-sS", "--cacert", tlsOrigin.CAFile, "-x", tp.ProxyURL("alice", "s3cret"), "https://"+tlsOrigin.Addr+"/small")
	if r.Code != 0 || r.Stdout != string(SmallBody) {
		t.Fatalf("CONNECT via tinyproxy: code %d stderr %q body %q", r.Code, r.Stderr, r.Stdout)
	}
	r = Curl(t, "-sS", "-x", tp.ProxyURL("alice", "s3cret"), "http://"+httpOrigin.Addr+"/small")
	if r.Code != 0 || r.Stdout != string(SmallBody) {
		t.Fatalf("plain via tinyproxy: code %d stderr %q", r.Code, r.Stderr)
	}
	// tinyproxy 1.11 answers 407 without credentials but 401 to wrong ones.
	r = Curl(t, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", "http://"+tp.Addr, "http://"+httpOrigin.Addr+"/small")
	if r.Stdout != "407" {
		t.Fatalf("tinyproxy without credentials: got %q, want 407", r.Stdout)
	}
	r = Curl(t, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", tp.ProxyURL("alice", "nope"), "http://"+httpOrigin.Addr+"/small")
	if r.Stdout != "401" && r.Stdout != "407" {
		t.Fatalf("tinyproxy with a wrong password: got %q, want 401 or 407", r.Stdout)
	}
}

func TestUpstreamConnectHeadersEarlyBytesAndClientEarlyBytes(t *testing.T) {
	echo := StartEchoOrigin(t)
	up := StartWireUpstream(t, WireUpstreamOptions{EarlyBytes: []byte("EARLY!")})
	c := Dial(t, up.Addr)
	head := ConnectHead(echo.Addr, "", "X-Vendor-Session: abc")
	c.WriteString(head + "sent-before-200")
	resp := c.MustResponse(http.MethodConnect)
	if resp.StatusCode != 200 || resp.Header.Get("X-Exit-IP") != "203.0.113.7" {
		t.Fatalf("got %s %v", resp.Status, resp.Header)
	}
	if got := string(c.ReadFull(len("EARLY!") + len("sent-before-200"))); got != "EARLY!sent-before-200" {
		t.Fatalf("tunnel start: got %q", got)
	}
	c.EchoRoundTrip("ping")
	if got := string(up.LastHead()); got != head {
		t.Fatalf("recorded head %q, want %q", got, head)
	}
}

func TestUpstreamModes(t *testing.T) {
	for _, tc := range []struct {
		mode   WireMode
		status int // 0: no answer
	}{
		{Wire407, 407}, {Wire403, 403}, {Wire503, 503}, {WireReset, 0}, {WireCloseBeforeAnswer, 0},
	} {
		up := StartWireUpstream(t, WireUpstreamOptions{Mode: tc.mode})
		c := Dial(t, up.Addr)
		c.WriteString(ConnectHead("127.0.0.1:9", ""))
		resp, err := c.ReadResponse(http.MethodConnect)
		switch {
		case tc.status != 0 && (err != nil || resp.StatusCode != tc.status):
			t.Errorf("mode %d: %v %v, want %d", tc.mode, resp, err, tc.status)
		case tc.status == 407 && resp.Header.Get("Proxy-Authenticate") == "":
			t.Errorf("mode 407 without Proxy-Authenticate")
		case tc.mode == WireReset && !IsReset(err):
			t.Errorf("mode reset: got %v, want a reset", err)
		case tc.mode == WireCloseBeforeAnswer && err != io.ErrUnexpectedEOF && err != io.EOF:
			t.Errorf("mode close: got %v, want EOF", err)
		}
	}
	up := StartWireUpstream(t, WireUpstreamOptions{Mode: WireHang})
	c := Dial(t, up.Addr)
	c.WriteString(ConnectHead("127.0.0.1:9", ""))
	up.WaitHeads(1, 30*time.Second)
	c.SetDeadline(300 * time.Millisecond)
	if _, err := c.ReadResponse(http.MethodConnect); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("mode hang: got %v, want a read timeout", err)
	}
}

func TestRawOriginsThroughTestUpstream(t *testing.T) {
	up := StartWireUpstream(t, WireUpstreamOptions{})

	// Source: all bytes and the right checksum.
	src := StartSourceOrigin(t, 3<<20+7)
	c, _ := Tunnel(t, up.Addr, src.Addr, "")
	h := sha256.New()
	n, err := io.Copy(h, c.R)
	if err != nil || n != 3<<20+7 || hex.EncodeToString(h.Sum(nil)) != PatternSHA256(3<<20+7) {
		t.Fatalf("source: %d bytes, err %v", n, err)
	}

	// Sink (slow): count and checksum.
	sink := StartSinkOrigin(t, SinkOptions{ReadSize: 64 << 10, Pause: time.Millisecond})
	c, _ = Tunnel(t, up.Addr, sink.Addr, "")
	if _, err := io.Copy(c.Conn, PatternReader(2<<20)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if r := sink.Result(t, time.Minute); r.Bytes != 2<<20 || r.SHA256 != PatternSHA256(2<<20) || r.Err != nil {
		t.Fatalf("sink: %+v", r)
	}

	// Reply after EOF: the client's FIN reaches the origin, the reply comes back.
	rae := StartReplyAfterEOFOrigin(t)
	c, _ = Tunnel(t, up.Addr, rae.Addr, "")
	payload := bytes.Repeat([]byte("x"), 100000)
	c.Write(payload)
	c.CloseWrite()
	got, err := io.ReadAll(c.R)
	if err != nil || string(got) != ReplyAfterEOF(int64(len(payload)), SHA256Hex(payload)) {
		t.Fatalf("reply-after-EOF: %q %v", got, err)
	}

	// FIN first: the greeting and EOF arrive, and the client can keep sending.
	ff := StartFINFirstOrigin(t)
	c, _ = Tunnel(t, up.Addr, ff.Addr, "")
	got = c.ReadFull(len(FINFirstGreeting))
	if string(got) != FINFirstGreeting {
		t.Fatalf("greeting %q", got)
	}
	if n, err := c.R.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after greeting: %d %v, want EOF", n, err)
	}
	c.Write(payload)
	c.CloseWrite()
	if r := ff.Result(t, time.Minute); r.Bytes != int64(len(payload)) || r.SHA256 != SHA256Hex(payload) {
		t.Fatalf("FIN-first origin got %+v", r)
	}
}

// Self-tests of the plain-HTTP harness parts (WireOrigin, WireUpstream,
// Socks5Server, TestCA, wire helpers), without proxyto: a raw client or Go's
// net/http talks to them directly.

type wireClient struct {
	c  net.Conn
	br *bufio.Reader
	t  *testing.T
}

func dialWire(t *testing.T, addr string) *wireClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() { c.Close() })
	return &wireClient{c: c, br: bufio.NewReader(c), t: t}
}

func (w *wireClient) send(s string) {
	w.t.Helper()
	if _, err := io.WriteString(w.c, s); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wireClient) resp(method string) *WireResponse {
	w.t.Helper()
	r, _, err := ReadFinalWireResponse(w.br, method)
	if err != nil {
		w.t.Fatalf("reading response: %v", err)
	}
	return r
}

func TestWireUpstreamForwardsVerbatim(t *testing.T) {
	o := StartWireOrigin(t)
	u := StartWireUpstream(t, WireUpstreamOptions{Auth: true, User: "u", Pass: "p"})
	c := dialWire(t, u.Addr)
	auth := "Proxy-Authorization: " + BasicAuth("u", "p")

	// Chunked request with trailers, odd header lines kept.
	c.send("POST " + o.URL("/up?x=1") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n" + auth + "\r\nx-odd:  v  \r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
	r := c.resp("POST")
	if want := SummaryBody("POST", "/up?x=1", []byte("hello world")); r.Status != 200 || string(r.Body) != want {
		t.Fatalf("got %q %q, want %q", r.Head.Line, r.Body, want)
	}
	reqs := o.Requests()
	if len(reqs) != 1 || reqs[0].Head.Line != "POST /up?x=1 HTTP/1.1" || !slices.Equal(reqs[0].Trailers, []string{"X-T: 1"}) ||
		reqs[0].Head.Has("Proxy-Authorization") || !slices.Contains(reqs[0].Head.Fields, "x-odd:  v  ") {
		t.Fatalf("origin recorded %+v", reqs)
	}
	heads := u.Heads()
	if len(heads) != 1 || heads[0].Conn != 1 || heads[0].Head.Get("Proxy-Authorization") != BasicAuth("u", "p") {
		t.Fatalf("upstream recorded %+v", heads)
	}

	// Framings on the same connection.
	for _, tc := range []struct {
		method, path string
		status       int
		framing      Framing
		n            int64
	}{
		{"GET", "/bytes?n=70000", 200, FrameLength, 70000},
		{"GET", "/chunked?n=70000", 200, FrameChunked, 70000},
		{"HEAD", "/bytes?n=70000", 200, FrameNone, 0},
		{"GET", "/status/204", 204, FrameNone, 0},
		{"GET", "/status/304", 304, FrameNone, 0},
		{"GET", "/status/418", 418, FrameLength, int64(len("status 418\n"))},
		{"GET", "/early-hints", 200, FrameLength, -1},
	} {
		c.send(tc.method + " " + o.URL(tc.path) + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n" + auth + "\r\n\r\n")
		r := c.resp(tc.method)
		if r.Status != tc.status || r.Framing != tc.framing || (tc.n >= 0 && r.BodyLen != tc.n) {
			t.Fatalf("%s %s: %q framing %v len %d", tc.method, tc.path, r.Head.Line, r.Framing, r.BodyLen)
		}
		if strings.HasPrefix(tc.path, "/bytes") && tc.method == "GET" && r.BodySHA256 != PatternSHA256(tc.n) {
			t.Fatalf("%s: bad body", tc.path)
		}
		if tc.framing == FrameChunked && len(r.Trailers) != 2 {
			t.Fatalf("%s: trailers %q", tc.path, r.Trailers)
		}
	}
	if u.Conns() != 1 || o.Accepted() != 1 {
		t.Fatalf("conns: upstream %d origin %d, want 1 and 1", u.Conns(), o.Accepted())
	}

	// Connection: close from the origin: upstream keeps the client side.
	c.send("GET " + o.URL("/conn-close") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n" + auth + "\r\n\r\n")
	if r := c.resp("GET"); !r.Head.HasToken("Connection", "close") {
		t.Fatalf("/conn-close: %q", r.Head.Raw)
	}
	c.send("GET " + o.URL("/again") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n" + auth + "\r\n\r\n")
	if r := c.resp("GET"); r.Status != 200 {
		t.Fatalf("after /conn-close: %q", r.Head.Line)
	}

	// Until-close ends the connection.
	c.send("GET " + o.URL("/close?n=1000") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n" + auth + "\r\n\r\n")
	if r := c.resp("GET"); r.Framing != FrameClose || r.BodyLen != 1000 {
		t.Fatalf("/close: %v %d", r.Framing, r.BodyLen)
	}

	// Wrong credentials: 407.
	c2 := dialWire(t, u.Addr)
	c2.send("GET " + o.URL("/x") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n\r\n")
	if r := c2.resp("GET"); r.Status != 407 {
		t.Fatalf("no credentials: %q", r.Head.Line)
	}
}

func TestWireUpstreamContinueUpgradeConnect(t *testing.T) {
	o := StartWireOrigin(t)
	echo := StartEchoOrigin(t)
	u := StartWireUpstream(t, WireUpstreamOptions{})

	c := dialWire(t, u.Addr)
	c.send("PUT " + o.URL("/c") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	r, err := ReadWireResponse(c.br, "PUT")
	if err != nil || r.Status != 100 {
		t.Fatalf("want 100 first: %v %+v", err, r)
	}
	c.send("body")
	if r := c.resp("PUT"); string(r.Body) != SummaryBody("PUT", "/c", []byte("body")) {
		t.Fatalf("after 100: %q", r.Body)
	}

	c.send("GET " + o.URL("/ws") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if r, err := ReadWireResponse(c.br, "GET"); err != nil || r.Status != 101 {
		t.Fatalf("want 101: %v %+v", err, r)
	}
	c.send("echo me")
	b := make([]byte, 7)
	if _, err := io.ReadFull(c.br, b); err != nil || string(b) != "echo me" {
		t.Fatalf("upgraded echo: %q %v", b, err)
	}

	c3 := dialWire(t, u.Addr)
	c3.send("CONNECT " + echo.Addr + " HTTP/1.1\r\nHost: " + echo.Addr + "\r\n\r\n")
	if r, err := ReadWireResponse(c3.br, "CONNECT"); err != nil || r.Status != 200 {
		t.Fatalf("CONNECT: %v %+v", err, r)
	}
	c3.send("tunnel")
	b = make([]byte, 6)
	if _, err := io.ReadFull(c3.br, b); err != nil || string(b) != "tunnel" {
		t.Fatalf("tunnel echo: %q %v", b, err)
	}
}

func TestWireUpstreamModes(t *testing.T) {
	o := StartWireOrigin(t)
	u := StartWireUpstream(t, WireUpstreamOptions{Mode: WireHalfBodyReset})
	c := dialWire(t, u.Addr)
	c.send("GET " + o.URL("/x") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n\r\n")
	h, err := ReadWireHead(c.br)
	if err != nil || h.Get("Content-Length") != fmt.Sprint(HalfBodyLength) {
		t.Fatalf("half body head: %v %+v", err, h)
	}
	n, err := io.Copy(io.Discard, c.br)
	if n != HalfBodyLength/2 || !IsReset(err) {
		t.Fatalf("half body: %d bytes, err %v; want %d and a reset", n, err, HalfBodyLength/2)
	}

	u.SetMode(Wire407)
	c = dialWire(t, u.Addr)
	c.send("GET " + o.URL("/x") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n\r\n")
	if r := c.resp("GET"); r.Status != 407 || r.Head.Get("Proxy-Authenticate") == "" {
		t.Fatalf("407 mode: %q", r.Head.Raw)
	}

	u.SetMode(WireForward)
	c = dialWire(t, u.Addr)
	c.send("GET " + o.URL("/x") + " HTTP/1.1\r\nHost: " + o.Addr + "\r\n\r\n")
	c.resp("GET")
	u.DropConns()
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatalf("DropConns left the connection open")
	}
}

func TestWireFramingRules(t *testing.T) {
	for _, tc := range []struct {
		lines string
		ok    bool
	}{
		{"Content-Length: 5\r\n", true},
		{"Content-Length: 5\r\nContent-Length: 5\r\n", true},
		{"Content-Length: 5\r\nContent-Length: 6\r\n", false},
		{"Content-Length: +5\r\n", false},
		{"Content-Length: 0x5\r\n", false},
		{"Content-Length: 5 5\r\n", false},
		{"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", false},
		{"Transfer-Encoding: gzip\r\n", false},
		{"Transfer-Encoding: gzip, chunked\r\n", true},
	} {
		h, err := ParseWireHead([]byte("POST / HTTP/1.1\r\n" + tc.lines + "\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := RequestFraming(h); (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.lines, err, tc.ok)
		}
	}
	var raw, data bytes.Buffer
	in := "3\r\nabc\r\n0\r\nT: 1\r\n\r\nNEXT"
	br := bufio.NewReader(strings.NewReader(in))
	tr, n, err := CopyBody(br, FrameChunked, 0, &raw, &data)
	if err != nil || n != 3 || data.String() != "abc" || raw.String() != strings.TrimSuffix(in, "NEXT") || !slices.Equal(tr, []string{"T: 1"}) {
		t.Fatalf("CopyBody chunked: %q %q %d %q %v", raw.String(), data.String(), n, tr, err)
	}
}

func TestWireUpstreamTLSAndSocks5WithGoClient(t *testing.T) {
	o := StartWireOrigin(t)
	ca := NewTestCA(t)
	u := StartWireUpstream(t, WireUpstreamOptions{Auth: true, User: "u", Pass: "p@ss", TLS: ca})
	s := StartSocks5(t, true, "su", "sp")

	for _, tc := range []struct {
		name  string
		proxy string
	}{
		{"https upstream", u.URL(url.UserPassword("u", "p@ss").String() + "@")},
		{"socks5", "socks5://su:sp@" + s.Addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pu, err := url.Parse(tc.proxy)
			if err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{
				Proxy:           func(*http.Request) (*url.URL, error) { return pu, nil },
				TLSClientConfig: &tls.Config{RootCAs: ca.Pool},
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Get(o.URL("/go?x=1"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := SummaryBody("GET", "/go?x=1", nil); string(b) != want {
				t.Fatalf("got %q, want %q", b, want)
			}
		})
	}
	if r := s.Requests(); len(r) != 1 || !r[0].Authed || r[0].User != "su" || r[0].Port == 0 {
		t.Fatalf("socks5 recorded %+v", r)
	}
	if h := u.Heads(); len(h) != 1 || h[0].Head.Get("Proxy-Authorization") != BasicAuth("u", "p@ss") {
		t.Fatalf("https upstream recorded %+v", h)
	}
}

func TestWireUpstreamLargeRequestBodies(t *testing.T) {
	o := StartWireOrigin(t)
	u := StartWireUpstream(t, WireUpstreamOptions{})
	c := dialWire(t, u.Addr)
	const n = 8 << 20
	payload, _ := io.ReadAll(PatternReader(n))
	c.send(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", o.URL("/cl"), o.Addr, n))
	go c.c.Write(payload)
	if r := c.resp("POST"); string(r.Body) != SummaryBody("POST", "/cl", payload) {
		t.Fatalf("CL: %q", r.Body)
	}
	c.send(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", o.URL("/ch"), o.Addr))
	go func() {
		var b bytes.Buffer
		for off := 0; off < n; off += 7001 {
			WriteChunked(&b, payload[off:min(off+7001, n)])
		}
		WriteLastChunk(&b, "X-T: 1")
		c.c.Write(b.Bytes())
	}()
	if r := c.resp("POST"); string(r.Body) != SummaryBody("POST", "/ch", payload) {
		t.Fatalf("chunked: %q", r.Body)
	}
}

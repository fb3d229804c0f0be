package harness

// These tests prove the harness itself works, without proxyto: curl straight
// through TestUpstream, squid and tinyproxy, and the raw origins through
// TestUpstream's relay.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
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
	httpOrigin := StartHTTPOrigin(t)
	up := StartUpstream(t, WithAuth("alice", "s3cret"))

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
	httpOrigin := StartHTTPOrigin(t)
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
	httpOrigin := StartHTTPOrigin(t)
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
	up := StartUpstream(t, WithEarlyBytes([]byte("EARLY!")))
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
		mode   Mode
		status int // 0: no answer
	}{
		{Mode407, 407}, {Mode403, 403}, {Mode5xx, 503}, {ModeReset, 0}, {ModeCloseBeforeAnswer, 0},
	} {
		up := StartUpstream(t, WithMode(tc.mode))
		c := Dial(t, up.Addr)
		c.WriteString(ConnectHead("127.0.0.1:9", ""))
		resp, err := c.ReadResponse(http.MethodConnect)
		switch {
		case tc.status != 0 && (err != nil || resp.StatusCode != tc.status):
			t.Errorf("mode %d: %v %v, want %d", tc.mode, resp, err, tc.status)
		case tc.status == 407 && resp.Header.Get("Proxy-Authenticate") == "":
			t.Errorf("mode 407 without Proxy-Authenticate")
		case tc.mode == ModeReset && !IsReset(err):
			t.Errorf("mode reset: got %v, want a reset", err)
		case tc.mode == ModeCloseBeforeAnswer && err != io.ErrUnexpectedEOF && err != io.EOF:
			t.Errorf("mode close: got %v, want EOF", err)
		}
	}
	up := StartUpstream(t, WithMode(ModeHang))
	c := Dial(t, up.Addr)
	c.WriteString(ConnectHead("127.0.0.1:9", ""))
	up.WaitHeads(1, 30*time.Second)
	c.SetDeadline(300 * time.Millisecond)
	if _, err := c.ReadResponse(http.MethodConnect); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("mode hang: got %v, want a read timeout", err)
	}
}

func TestRawOriginsThroughTestUpstream(t *testing.T) {
	up := StartUpstream(t)

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

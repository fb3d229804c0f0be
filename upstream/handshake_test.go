package upstream_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/httpparse"
	"github.com/proxyto/proxyto/proxystatus"
	"github.com/proxyto/proxyto/upstream"
)

func TestConnectHandshake(t *testing.T) {
	var up httpparse.UpstreamList
	if err := up.Parse([]byte("alice:s3cret@up.test:3128")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		answer    string
		wantN     int // -1: the whole answer
		wantDone  bool
		wantReply string
		wantType  proxystatus.Type
		wantRecv  int
	}{
		{"200 with vendor headers", "HTTP/1.1 200 OK\r\nX-Exit-IP: 203.0.113.7\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\nearly", len("HTTP/1.1 200 OK\r\nX-Exit-IP: 203.0.113.7\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"), true,
			"HTTP/1.1 200 Connection established\r\nX-Exit-IP: 203.0.113.7\r\n\r\n", proxystatus.None, 0},
		{"interim then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 Connection established\r\n\r\n", -1, true,
			"HTTP/1.1 200 Connection established\r\n\r\n", proxystatus.None, 0},
		{"partial head", "HTTP/1.1 200 OK\r\nX-A: b", 0, false, "", proxystatus.None, 0},
		{"407", "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 0, false, "", proxystatus.HTTPRequestDenied, 407},
		{"502", "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", 0, false, "", proxystatus.DestinationUnavailable, 502},
		{"malformed", "SSH-2.0-OpenSSH\r\n\r\n", 0, false, "", proxystatus.HTTPResponseError, 0},
		{"too large", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("x", 5000), 0, false, "", proxystatus.HTTPResponseError, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp httpparse.Response
			c := upstream.Connect{Upstream: &up.Upstreams()[0], Authority: []byte("example.com:443"),
				E2E: []byte("X-Vendor-Session: 7\r\n"), Resp: &resp, MaxHead: 4096}
			out, done, err := c.Start(nil)
			if err != nil || done {
				t.Fatalf("Start: done %v, err %v", done, err)
			}
			wantReq := "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\nX-Vendor-Session: 7\r\n\r\n"
			if string(out) != wantReq {
				t.Fatalf("request %q, want %q", out, wantReq)
			}
			st, err := c.Feed([]byte(tt.answer), nil, []byte("r:"))
			if tt.wantType != proxystatus.None {
				var pe *proxystatus.Error
				if !errors.As(err, &pe) || pe.Type != tt.wantType || pe.Received != tt.wantRecv {
					t.Fatalf("error %v, want type %v received %d", err, tt.wantType, tt.wantRecv)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantN := tt.wantN
			if wantN < 0 {
				wantN = len(tt.answer)
			}
			if st.N != wantN || st.Done != tt.wantDone || len(st.Send) != 0 {
				t.Fatalf("step N=%d Done=%v Send=%q; want N=%d Done=%v", st.N, st.Done, st.Send, wantN, tt.wantDone)
			}
			if tt.wantDone && string(st.Reply) != "r:"+tt.wantReply {
				t.Fatalf("reply %q, want %q", st.Reply, "r:"+tt.wantReply)
			}
		})
	}
}

func TestForwardHead(t *testing.T) {
	tests := []struct {
		name, xpt string
		addHost   bool
		want      string
	}{
		{"http upstream with credentials", "u:p@up.test:3128", false,
			"POST http://o.test/a?b HTTP/1.0\r\nProxy-Authorization: Basic dTpw\r\nX-C: 1\r\n\r\n"},
		{"http upstream, Host added", "up.test:3128", true,
			"POST http://o.test/a?b HTTP/1.0\r\nHost: o.test\r\nX-C: 1\r\n\r\n"},
		{"socks5: origin-form, no Proxy-Authorization", "socks5h://u:p@up.test", true,
			"POST /a?b HTTP/1.0\r\nHost: o.test\r\nX-C: 1\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l httpparse.UpstreamList
			if err := l.Parse([]byte(tt.xpt)); err != nil {
				t.Fatal(err)
			}
			f := upstream.Forward{Upstream: &l.Upstreams()[0], Method: []byte("POST"), URL: []byte("http://o.test/a?b"),
				Path: []byte("/a?b"), Minor: 0, AddHost: tt.addHost, Authority: []byte("o.test"), E2E: []byte("X-C: 1\r\n")}
			out, done, err := f.Start([]byte("k|"))
			if err != nil || !done {
				t.Fatalf("done %v err %v", done, err)
			}
			if string(out) != "k|"+tt.want {
				t.Fatalf("head %q, want %q", out, "k|"+tt.want)
			}
		})
	}
}

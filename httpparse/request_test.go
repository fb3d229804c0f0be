package httpparse

import (
	"errors"
	"strings"
	"testing"
)

// crlf turns the "|" of a readable test head into CRLF.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "|", "\r\n")) }

func TestRequestParseAccept(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, r *Request, buf []byte)
	}{
		{"connect", "CONNECT example.com:443 HTTP/1.1|Host: example.com:443|X-Proxy-To: p:3128||", func(t *testing.T, r *Request, buf []byte) {
			eq(t, "method", r.Method.Bytes(buf), "CONNECT")
			eq(t, "target", r.Target.Bytes(buf), "example.com:443")
			eq(t, "authority", r.TargetAuthority.Bytes(buf), "example.com:443")
			eq(t, "host", r.Host.Bytes(buf), "example.com:443")
			eq(t, "xproxyto", r.XProxyTo.Bytes(buf), "p:3128")
			if !r.Connect || r.Head || r.Form != FormAuthority || r.Minor != 1 || !r.HasHost || r.XProxyToCount != 1 || r.ContentLength != -1 || r.HasBody() {
				t.Errorf("flags: %+v", r)
			}
		}},
		{"connect ipv6", "CONNECT [2001:db8::1]:443 HTTP/1.1||", func(t *testing.T, r *Request, buf []byte) {
			if r.Form != FormAuthority || r.HasHost {
				t.Errorf("%+v", r)
			}
		}},
		{"origin form", "GET /a?b=1 HTTP/1.1|Host: example.com||", func(t *testing.T, r *Request, buf []byte) {
			if r.Form != FormOrigin || r.Connect {
				t.Errorf("%+v", r)
			}
			eq(t, "path", r.TargetPath.Bytes(buf), "")
		}},
		{"absolute form", "GET http://Example.COM:8080/a?b=1 HTTP/1.1||", func(t *testing.T, r *Request, buf []byte) {
			if r.Form != FormAbsolute {
				t.Errorf("form %v", r.Form)
			}
			eq(t, "scheme", r.TargetScheme.Bytes(buf), "http")
			eq(t, "authority", r.TargetAuthority.Bytes(buf), "Example.COM:8080")
			eq(t, "path", r.TargetPath.Bytes(buf), "/a?b=1")
		}},
		{"absolute form no path", "GET http://example.com HTTP/1.1||", func(t *testing.T, r *Request, buf []byte) {
			eq(t, "path", r.TargetPath.Bytes(buf), "")
			eq(t, "authority", r.TargetAuthority.Bytes(buf), "example.com")
		}},
		{"absolute form query only", "GET http://example.com?x HTTP/1.1||", func(t *testing.T, r *Request, buf []byte) {
			eq(t, "path", r.TargetPath.Bytes(buf), "?x")
		}},
		{"asterisk", "OPTIONS * HTTP/1.1|Host: a||", func(t *testing.T, r *Request, buf []byte) {
			if r.Form != FormAsterisk {
				t.Errorf("form %v", r.Form)
			}
		}},
		{"head http/1.0", "HEAD / HTTP/1.0||", func(t *testing.T, r *Request, buf []byte) {
			if !r.Head || r.Minor != 0 || !r.WantsClose() {
				t.Errorf("%+v", r)
			}
		}},
		{"http/1.0 keep-alive", "GET / HTTP/1.0|Connection: Keep-Alive||", func(t *testing.T, r *Request, buf []byte) {
			if !r.KeepAlive || r.WantsClose() {
				t.Errorf("%+v", r)
			}
		}},
		{"extension method", "PURGE-X /x HTTP/1.1||", func(t *testing.T, r *Request, buf []byte) {
			eq(t, "method", r.Method.Bytes(buf), "PURGE-X")
		}},
		{"leading empty lines", "\r\n\nGET / HTTP/1.1||", func(t *testing.T, r *Request, buf []byte) {
			eq(t, "method", r.Method.Bytes(buf), "GET")
		}},
		{"bare LF", "GET / HTTP/1.1\nHost: a\nX:  b  \n\n", func(t *testing.T, r *Request, buf []byte) {
			eq(t, "host", r.Host.Bytes(buf), "a")
			eq(t, "x", r.Headers[1].Value.Bytes(buf), "b")
			eq(t, "line", r.Headers[1].Line.Bytes(buf), "X:  b  ")
		}},
		{"OWS trimmed, empty value", "GET / HTTP/1.1|A:\t x \t|B:|C: ||", func(t *testing.T, r *Request, buf []byte) {
			eq(t, "a", r.Headers[0].Value.Bytes(buf), "x")
			eq(t, "b", r.Headers[1].Value.Bytes(buf), "")
			eq(t, "c", r.Headers[2].Value.Bytes(buf), "")
		}},
		{"obs-text value", "GET / HTTP/1.1|A: caf\xc3\xa9||", func(t *testing.T, r *Request, buf []byte) {
			eq(t, "a", r.Headers[0].Value.Bytes(buf), "caf\xc3\xa9")
		}},
		{"content-length", "POST / HTTP/1.1|Content-Length: 007||", func(t *testing.T, r *Request, buf []byte) {
			if r.ContentLength != 7 || !r.HasBody() || r.Chunked {
				t.Errorf("%+v", r)
			}
		}},
		{"repeated identical content-length", "POST / HTTP/1.1|Content-Length: 5|content-length: 5||", func(t *testing.T, r *Request, buf []byte) {
			if r.ContentLength != 5 {
				t.Errorf("cl %d", r.ContentLength)
			}
		}},
		{"max content-length", "POST / HTTP/1.1|Content-Length: 9223372036854775807||", func(t *testing.T, r *Request, buf []byte) {
			if r.ContentLength != 1<<63-1 {
				t.Errorf("cl %d", r.ContentLength)
			}
		}},
		{"chunked", "POST / HTTP/1.1|Transfer-Encoding: Chunked||", func(t *testing.T, r *Request, buf []byte) {
			if !r.Chunked || r.ContentLength != -1 || !r.HasBody() {
				t.Errorf("%+v", r)
			}
		}},
		{"gzip, chunked", "POST / HTTP/1.1|Transfer-Encoding: gzip, chunked||", func(t *testing.T, r *Request, buf []byte) {
			if !r.Chunked {
				t.Errorf("%+v", r)
			}
		}},
		{"codings over two fields", "POST / HTTP/1.1|Transfer-Encoding: gzip|Transfer-Encoding: chunked||", func(t *testing.T, r *Request, buf []byte) {
			if !r.Chunked {
				t.Errorf("%+v", r)
			}
		}},
		{"connection tokens", "GET / HTTP/1.1|Connection: foo|connection: CLOSE , Upgrade|Upgrade: websocket|Expect: 100-Continue||", func(t *testing.T, r *Request, buf []byte) {
			if !r.Close || !r.Upgrade || r.KeepAlive || !r.Expect100 || !r.WantsClose() {
				t.Errorf("%+v", r)
			}
			eq(t, "upgrade", r.UpgradeValue.Bytes(buf), "websocket")
		}},
		{"x-proxy-session captured and counted", "GET / HTTP/1.1|X-Proxy-Session:  s42 |x-proxy-session: s43||", func(t *testing.T, r *Request, buf []byte) {
			if r.XProxySessionCount != 2 {
				t.Errorf("count %d", r.XProxySessionCount)
			}
			eq(t, "first", r.XProxySession.Bytes(buf), "s42")
		}},
		{"repeated x-proxy-to counted", "GET / HTTP/1.1|X-Proxy-To: a:1|x-proxy-to: b:2|Proxy-Authorization: Basic x|Proxy-Authorization: Basic y||", func(t *testing.T, r *Request, buf []byte) {
			if r.XProxyToCount != 2 || !r.HasProxyAuth {
				t.Errorf("%+v", r)
			}
			eq(t, "first", r.XProxyTo.Bytes(buf), "a:1")
			eq(t, "auth", r.ProxyAuthorization.Bytes(buf), "Basic x")
		}},
		{"target with obs-text", "GET /caf\xc3\xa9 HTTP/1.1||", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := append(crlf(tt.in), "NEXT"...)
			var r Request
			n, err := r.Parse(buf)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n != len(buf)-4 || r.HeadLen != n {
				t.Fatalf("n = %d, HeadLen %d, want %d", n, r.HeadLen, len(buf)-4)
			}
			if tt.check != nil {
				tt.check(t, &r, buf)
			}
			// Every strict prefix is incomplete, never an error.
			for i := range n {
				var p Request
				if _, err := p.Parse(buf[:i]); err != ErrNeedMore {
					t.Fatalf("prefix %d: err %v, want ErrNeedMore", i, err)
				}
			}
		})
	}
}

func TestRequestParseReject(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty method", " / HTTP/1.1||", ErrBadRequestLine},
		{"http/0.9", "GET /|", ErrBadRequestLine},
		{"method only", "GET|", ErrBadRequestLine},
		{"bare CR before request line", "\rGET / HTTP/1.1||", ErrBadRequestLine},
		{"method with slash", "GE/T / HTTP/1.1||", ErrBadMethod},
		{"method with NUL", "GE\x00T / HTTP/1.1||", ErrBadMethod},
		{"double space", "GET  / HTTP/1.1||", ErrBadTarget},
		{"target with CTL", "GET /\x01 HTTP/1.1||", ErrBadTarget},
		{"target with DEL", "GET /\x7f HTTP/1.1||", ErrBadTarget},
		{"target with tab", "GET /\t HTTP/1.1||", ErrBadTarget},
		{"target with space", "GET /a b HTTP/1.1||", ErrBadVersion},
		{"relative target", "GET a/b HTTP/1.1||", ErrBadTarget},
		{"absolute without host", "GET http:///a HTTP/1.1||", ErrBadTarget},
		{"absolute with userinfo", "GET http://u:p@h/ HTTP/1.1||", ErrBadTarget},
		{"absolute with fragment", "GET http://h#f HTTP/1.1||", ErrBadTarget},
		{"absolute bad port", "GET http://h:0/ HTTP/1.1||", ErrBadTarget},
		{"absolute empty port", "GET http://h:/ HTTP/1.1||", ErrBadTarget},
		{"connect without port", "CONNECT example.com HTTP/1.1||", ErrBadTarget},
		{"connect with path", "CONNECT /rpc HTTP/1.1||", ErrBadTarget},
		{"connect absolute", "CONNECT http://a:1/ HTTP/1.1||", ErrBadTarget},
		{"connect unbracketed v6", "CONNECT ::1:443 HTTP/1.1||", ErrBadTarget},
		{"connect port too big", "CONNECT a:65536 HTTP/1.1||", ErrBadTarget},
		{"http/2.0", "GET / HTTP/2.0||", ErrBadVersion},
		{"http/1.2", "GET / HTTP/1.2||", ErrBadVersion},
		{"lower-case version", "GET / http/1.1||", ErrBadVersion},
		{"trailing space after version", "GET / HTTP/1.1 ||", ErrBadVersion},
		{"version bare CR", "GET / HTTP/1.1\rX: y||", ErrBadVersion},
		{"no colon", "GET / HTTP/1.1|Host||", ErrBadHeader},
		{"empty name", "GET / HTTP/1.1|: x||", ErrBadHeader},
		{"space before colon", "GET / HTTP/1.1|Host : x||", ErrBadHeader},
		{"tab before colon", "GET / HTTP/1.1|Host\t: x||", ErrBadHeader},
		{"bad name byte", "GET / HTTP/1.1|Ho\"st: x||", ErrBadHeader},
		{"NUL in value", "GET / HTTP/1.1|A: x\x00y||", ErrBadHeader},
		{"bare CR in value", "GET / HTTP/1.1|A: x\ry||", ErrBadHeader},
		{"bare CR at value end", "GET / HTTP/1.1|A: x\r\r\n|", ErrBadHeader},
		{"DEL in value", "GET / HTTP/1.1|A: x\x7f||", ErrBadHeader},
		{"bare CR as head end", "GET / HTTP/1.1|A: x|\rX", ErrBadHeader},
		{"obs-fold", "GET / HTTP/1.1|A: x| y||", ErrObsFold},
		{"obs-fold first line", "GET / HTTP/1.1|\tA: x||", ErrObsFold},
		{"two hosts", "GET / HTTP/1.1|Host: a|Host: a||", ErrDuplicateHost},
		{"empty content-length", "POST / HTTP/1.1|Content-Length: ||", ErrBadContentLength},
		{"signed content-length", "POST / HTTP/1.1|Content-Length: +5||", ErrBadContentLength},
		{"list content-length", "POST / HTTP/1.1|Content-Length: 5, 5||", ErrBadContentLength},
		{"overflow content-length", "POST / HTTP/1.1|Content-Length: 9223372036854775808||", ErrBadContentLength},
		{"conflicting content-length", "POST / HTTP/1.1|Content-Length: 5|Content-Length: 6||", ErrConflictingContentLength},
		{"te and cl", "POST / HTTP/1.1|Transfer-Encoding: chunked|Content-Length: 5||", ErrLengthAndChunked},
		{"cl and te", "POST / HTTP/1.1|Content-Length: 5|Transfer-Encoding: chunked||", ErrLengthAndChunked},
		{"gzip only", "POST / HTTP/1.1|Transfer-Encoding: gzip||", ErrUnsupportedTransferEncoding},
		{"chunked not final", "POST / HTTP/1.1|Transfer-Encoding: chunked, gzip||", ErrUnsupportedTransferEncoding},
		{"chunked twice", "POST / HTTP/1.1|Transfer-Encoding: chunked|Transfer-Encoding: chunked||", ErrUnsupportedTransferEncoding},
		{"empty te", "POST / HTTP/1.1|Transfer-Encoding: ||", ErrUnsupportedTransferEncoding},
		{"te in http/1.0", "POST / HTTP/1.0|Transfer-Encoding: chunked||", ErrUnsupportedTransferEncoding},
		{"chunkedx", "POST / HTTP/1.1|Transfer-Encoding: chunkedx||", ErrUnsupportedTransferEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Request
			_, err := r.Parse(crlf(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRequestTooManyConnectionOptions(t *testing.T) {
	var r Request
	ok := "GET / HTTP/1.1|Connection: " + strings.Repeat("a, ", MaxConnectionOptions/2) + ",,|Connection: " + strings.Repeat("b,", MaxConnectionOptions/2) + "||"
	if _, err := r.Parse(crlf(ok)); err != nil {
		t.Fatalf("%d options: %v", MaxConnectionOptions, err)
	}
	bad := "GET / HTTP/1.1|Connection: " + strings.Repeat("a,", MaxConnectionOptions+1) + "||"
	if _, err := r.Parse(crlf(bad)); err != ErrTooManyConnectionOptions {
		t.Fatalf("%d options: %v", MaxConnectionOptions+1, err)
	}
	var resp Response
	if _, err := resp.Parse(crlf("HTTP/1.1 200 OK|Connection: " + strings.Repeat("a,", MaxConnectionOptions+1) + "||")); err != ErrTooManyConnectionOptions {
		t.Fatalf("response: %v", err)
	}
}

func TestRequestTooManyHeaders(t *testing.T) {
	head := "GET / HTTP/1.1|" + strings.Repeat("A: b|", MaxHeaders)
	var r Request
	if _, err := r.Parse(crlf(head + "|")); err != nil {
		t.Fatalf("%d headers: %v", MaxHeaders, err)
	}
	if _, err := r.Parse(crlf(head + "A: b||")); err != ErrTooManyHeaders {
		t.Fatalf("%d headers: %v", MaxHeaders+1, err)
	}
}

// TestRequestEarlyReject checks that malformed bytes are reported before the
// head is complete, so a garbage stream gets a 400, not a 431.
func TestRequestEarlyReject(t *testing.T) {
	for _, in := range []string{"GE\x00", "GET /\x01", "GET / HTTP/2", "GET / HTTP/1.1\r\nA\x00", "GET / HTTP/1.1\r\nA: \x00", "GET / HTTP/1.1\r\n A"} {
		var r Request
		if _, err := r.Parse([]byte(in)); err == nil || err == ErrNeedMore {
			t.Errorf("%q: err %v, want a syntax error", in, err)
		}
	}
}

func TestRequestReuse(t *testing.T) {
	var r Request
	a := crlf("POST / HTTP/1.1|Host: a|Content-Length: 3|X-Proxy-To: p:1|X-Proxy-Session: k|Connection: close||")
	b := crlf("GET / HTTP/1.1|X: y||")
	if _, err := r.Parse(a); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Parse(b); err != nil {
		t.Fatal(err)
	}
	if r.HasHost || r.ContentLength != -1 || r.XProxyToCount != 0 || r.XProxySessionCount != 0 || r.Close || len(r.Headers) != 1 {
		t.Fatalf("state leaked across Parse: %+v", r)
	}
}

func eq(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

package upstream_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/proxyto/proxyto/upstream"
)

func TestAppendConnectLine(t *testing.T) {
	tests := []struct {
		name      string
		authority string
		user      string
		pass      string
		hasAuth   bool
		want      string
	}{
		{"no auth", "example.com:443", "", "", false,
			"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"},
		{"credentials ignored without hasAuth", "example.com:443", "u", "p", false,
			"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"},
		{"basic auth", "example.com:443", "alice", "secret", true,
			"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"},
		{"decoded specials", "10.0.0.1:8443", "user@corp", "p@ss:w0rd", true,
			"CONNECT 10.0.0.1:8443 HTTP/1.1\r\nHost: 10.0.0.1:8443\r\nProxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("user@corp:p@ss:w0rd")) + "\r\n"},
		{"empty user and password", "[2001:db8::1]:443", "", "", true,
			"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\nProxy-Authorization: Basic Og==\r\n"},
		{"padding one", "h:1", "ab", "", true,
			"CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\nProxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("ab:")) + "\r\n"},
		{"padding two", "h:1", "abcd", "", true,
			"CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\nProxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("abcd:")) + "\r\n"},
		{"non-ASCII password", "h:1", "u", "pässwörd", true,
			"CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\nProxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("u:pässwörd")) + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("kept|")
			got := upstream.AppendConnectLine(append([]byte(nil), prefix...), []byte(tt.authority), []byte(tt.user), []byte(tt.pass), tt.hasAuth)
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("prefix lost: %q", got)
			}
			if string(got[len(prefix):]) != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got[len(prefix):], tt.want)
			}
			// With the final CRLF the engine adds, net/http reads the same request.
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.want + "\r\n")))
			if err != nil {
				t.Fatalf("net/http cannot read it: %v", err)
			}
			if req.Method != "CONNECT" || req.Host != tt.authority {
				t.Errorf("net/http read %s %q", req.Method, req.Host)
			}
			if tt.hasAuth {
				user, pass, ok := parseBasic(req.Header.Get("Proxy-Authorization"))
				if !ok || user != tt.user || pass != tt.pass {
					t.Errorf("Proxy-Authorization decodes to %q:%q (%v), want %q:%q", user, pass, ok, tt.user, tt.pass)
				}
			}
		})
	}
}

func parseBasic(v string) (user, pass string, ok bool) {
	enc, found := strings.CutPrefix(v, "Basic ")
	if !found {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(b), ":")
	return user, pass, ok
}

func BenchmarkAppendConnectLine(b *testing.B) {
	buf := make([]byte, 0, 256)
	auth, user, pass := []byte("www.example.com:443"), []byte("customer-123-zone-res"), []byte("s3cr3t-p@ss")
	b.ReportAllocs()
	for b.Loop() {
		buf = upstream.AppendConnectLine(buf[:0], auth, user, pass, true)
	}
	b.SetBytes(int64(len(buf)))
}

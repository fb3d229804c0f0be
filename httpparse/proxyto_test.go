package httpparse

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestUpstreamListParseValid(t *testing.T) {
	type up struct {
		scheme     Scheme
		hostport   string // AppendHostPort
		ipv6       bool
		user, pass string
		auth       bool
	}
	tests := []struct {
		in   string
		want []up
	}{
		{"proxy.example:3128", []up{{SchemeHTTP, "proxy.example:3128", false, "", "", false}}},
		{"proxy.example", []up{{SchemeHTTP, "proxy.example:80", false, "", "", false}}},
		{"http://p", []up{{SchemeHTTP, "p:80", false, "", "", false}}},
		{"HTTPS://p", []up{{SchemeHTTPS, "p:443", false, "", "", false}}},
		{"socks5://p", []up{{SchemeSOCKS5, "p:1080", false, "", "", false}}},
		{"SOCKS5H://p", []up{{SchemeSOCKS5H, "p:1080", false, "", "", false}}},
		{"user:p%40ss@p:1", []up{{SchemeHTTP, "p:1", false, "user", "p@ss", true}}},
		{"http://us%65r:pa%3Ass:w@p:1", []up{{SchemeHTTP, "p:1", false, "user", "pa:ss:w", true}}},
		{"user@p:1", []up{{SchemeHTTP, "p:1", false, "user", "", true}}},
		{":pass@p:1", []up{{SchemeHTTP, "p:1", false, "", "pass", true}}},
		{"u:@p:1", []up{{SchemeHTTP, "p:1", false, "u", "", true}}},
		{"@p:1", []up{{SchemeHTTP, "p:1", false, "", "", true}}},
		{"u-._~!$&'()*+;=:x@p", []up{{SchemeHTTP, "p:80", false, "u-._~!$&'()*+;=", "x", true}}},
		{"[::1]:3128", []up{{SchemeHTTP, "[::1]:3128", true, "", "", false}}},
		{"https://[2001:db8::1]", []up{{SchemeHTTPS, "[2001:db8::1]:443", true, "", "", false}}},
		{"[::ffff:1.2.3.4]:1", []up{{SchemeHTTP, "[::ffff:1.2.3.4]:1", true, "", "", false}}},
		{"10.0.0.1:65535", []up{{SchemeHTTP, "10.0.0.1:65535", false, "", "", false}}},
		{"under_score.example.:8080", []up{{SchemeHTTP, "under_score.example.:8080", false, "", "", false}}},
		{" \ta:1 ,\tsocks5://u:p@b:2 , [::1] ", []up{
			{SchemeHTTP, "a:1", false, "", "", false},
			{SchemeSOCKS5, "b:2", false, "u", "p", true},
			{SchemeHTTP, "[::1]:80", true, "", "", false},
		}},
		{strings.TrimSuffix(strings.Repeat("h:1,", MaxUpstreams), ","), func() []up {
			r := make([]up, MaxUpstreams)
			for i := range r {
				r[i] = up{SchemeHTTP, "h:1", false, "", "", false}
			}
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var l UpstreamList
			v := []byte(tt.in)
			if err := l.Parse(v); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for i := range v { // the result must not alias the input
				v[i] = 'X'
			}
			if l.N != len(tt.want) {
				t.Fatalf("N = %d, want %d", l.N, len(tt.want))
			}
			for i, w := range tt.want {
				u := l.Upstreams()[i]
				got := up{u.Scheme, string(u.AppendHostPort(nil)), u.IPv6, string(u.User), string(u.Pass), u.HasAuth}
				if got != w {
					t.Errorf("[%d] = %+v, want %+v", i, got, w)
				}
			}
		})
	}
}

func TestUpstreamListParseInvalid(t *testing.T) {
	tests := []struct {
		in    string
		want  error
		index int
	}{
		{"", ErrProxyToEmpty, 0},
		{" \t ", ErrProxyToEmpty, 0},
		{"a:1,", ErrProxyToEmptyElement, 1},
		{"a:1,,b:1", ErrProxyToEmptyElement, 1},
		{",a:1", ErrProxyToEmptyElement, 0},
		{"a:1, ,b:1", ErrProxyToEmptyElement, 1},
		{strings.Repeat("a", MaxProxyToLen+1), ErrProxyToTooLong, 0},
		{strings.Repeat("h:1,", MaxUpstreams) + "h:1", ErrProxyToTooMany, MaxUpstreams},
		{"ftp://p:1", ErrProxyToScheme, 0},
		{"socks4://p:1", ErrProxyToScheme, 0},
		{"://p:1", ErrProxyToScheme, 0},
		{"u:p://x@p:1", ErrProxyToScheme, 0},
		{"p:1/", ErrProxyToPath, 0},
		{"http://p:1/path", ErrProxyToPath, 0},
		{"p:1?q", ErrProxyToPath, 0},
		{"p:1#f", ErrProxyToPath, 0},
		{"http:/p", ErrProxyToPath, 0},
		{"p :1", ErrProxyToControl, 0},
		{"p\t:1", ErrProxyToControl, 0},
		{"p:1\x00", ErrProxyToControl, 0},
		{"u\x7f@p:1", ErrProxyToControl, 0},
		{"p\xc3\xa9:1", ErrProxyToControl, 0},
		{"u:%0a@p:1", ErrProxyToControl, 0},
		{"u%3a:p@h", ErrProxyToUserinfo, 0},
		{"u:p@ss@h", ErrProxyToUserinfo, 0},
		{"u[:p@h", ErrProxyToUserinfo, 0},
		{"u:p\"@h", ErrProxyToUserinfo, 0},
		{"u:%4@h", ErrProxyToEscape, 0},
		{"u:%zz@h", ErrProxyToEscape, 0},
		{"u%@h", ErrProxyToEscape, 0},
		{"u@", ErrProxyToHost, 0},
		{":1", ErrProxyToHost, 0},
		{"http://", ErrProxyToHost, 0},
		{"h!st:1", ErrProxyToHost, 0},
		{"a..b:1", ErrProxyToHost, 0},
		{".a:1", ErrProxyToHost, 0},
		{strings.Repeat("a", 64) + ".b:1", ErrProxyToHost, 0},
		{"1.2.3.256:1", ErrProxyToHost, 0},
		{"1.2.3:1", ErrProxyToHost, 0},
		{"01.2.3.4:1", ErrProxyToHost, 0},
		{"1234:1", ErrProxyToHost, 0},
		{"::1", ErrProxyToHost, 0},
		{"2001:db8::1:3128", ErrProxyToHost, 0},
		{"[::1", ErrProxyToHost, 0},
		{"[::g]:1", ErrProxyToHost, 0},
		{"[1.2.3.4]:1", ErrProxyToHost, 0},
		{"[fe80::1%25eth0]:1", ErrProxyToHost, 0},
		{"[::1]x", ErrProxyToHost, 0},
		{"[]:1", ErrProxyToHost, 0},
		{"p:", ErrProxyToPort, 0},
		{"p:0", ErrProxyToPort, 0},
		{"p:65536", ErrProxyToPort, 0},
		{"p:99999999999999999999", ErrProxyToPort, 0},
		{"p:8o", ErrProxyToPort, 0},
		{"p:-1", ErrProxyToPort, 0},
		{"[::1]:", ErrProxyToPort, 0},
		{"a:1, b:0", ErrProxyToPort, 1},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var l UpstreamList
			err := l.Parse([]byte(tt.in))
			var pe *ProxyToError
			if !errors.As(err, &pe) || !errors.Is(err, tt.want) || pe.Index != tt.index {
				t.Fatalf("err %v, want %v at %d", err, tt.want, tt.index)
			}
			if l.N != 0 {
				t.Errorf("N = %d after error", l.N)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "proxyto: X-Proxy-To element ") ||
				len(tt.in) > 3 && strings.Contains(msg, tt.in) {
				t.Errorf("message %q leaks input or lacks prefix", msg)
			}
		})
	}
}

// TestProxyToErrorNoSecret makes sure no error text carries a credential.
func TestProxyToErrorNoSecret(t *testing.T) {
	for _, in := range []string{"u:hunter2@h:0", "u:hunter2@h/x", "ftp://u:hunter2@h", "u:hunter2%zz@h", "u:hunter2@h:1,"} {
		var l UpstreamList
		err := l.Parse([]byte(in))
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestUpstreamListReuse(t *testing.T) {
	var l UpstreamList
	if err := l.Parse([]byte("u:p@a:1, b:2")); err != nil {
		t.Fatal(err)
	}
	if err := l.Parse([]byte("c:3")); err != nil {
		t.Fatal(err)
	}
	if l.N != 1 || l.List[1].Host != nil || l.List[0].HasAuth {
		t.Fatalf("stale state: %+v", l.List[:2])
	}
	if err := l.Parse([]byte("d:0")); err == nil || l.N != 0 || l.List[0].Host != nil {
		t.Fatalf("error left state: %v %+v", err, l.List[0])
	}
}

func TestAppendBasicAuth(t *testing.T) {
	for _, c := range [][2]string{{"", ""}, {"a", ""}, {"", "b"}, {"Aladdin", "open sesame"}, {"u", "p@ss"}, {"ab", "cd"}, {"abc", "defgh"}, {"\xff\x00", "\x80"}} {
		got := string(AppendBasicAuth([]byte("x"), []byte(c[0]), []byte(c[1])))
		want := "xBasic " + base64.StdEncoding.EncodeToString([]byte(c[0]+":"+c[1]))
		if got != want {
			t.Errorf("%q: got %q, want %q", c, got, want)
		}
	}
}

func TestSchemeString(t *testing.T) {
	for s, want := range map[Scheme]string{SchemeHTTP: "http", SchemeHTTPS: "https", SchemeSOCKS5: "socks5", SchemeSOCKS5H: "socks5h", 9: "unknown"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}

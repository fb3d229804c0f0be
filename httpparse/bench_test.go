package httpparse

import "testing"

var (
	benchConnect = []byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8.5.0\r\n" +
		"Proxy-Connection: Keep-Alive\r\nX-Proxy-To: http://user:p%40ss@proxy.example:3128\r\n\r\n")
	benchGet = []byte("GET http://example.com/path/to/page?q=1&r=2 HTTP/1.1\r\nHost: example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Cookie: session=0123456789abcdef; theme=dark\r\nConnection: keep-alive, X-Trace\r\n" +
		"X-Trace: abc\r\nUpgrade-Insecure-Requests: 1\r\nX-Proxy-To: socks5h://u:p@[2001:db8::1]:1080, b:3128\r\n" +
		"Proxy-Authorization: Basic dTpw\r\n\r\n")
	benchResponse = []byte("HTTP/1.1 200 OK\r\nDate: Mon, 27 Jul 2009 12:28:53 GMT\r\nServer: Apache\r\n" +
		"Content-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\nCache-Control: max-age=60\r\n" +
		"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nVary: Accept-Encoding\r\n\r\n")
)

func benchRequest(b *testing.B, head []byte) {
	var r Request
	b.SetBytes(int64(len(head)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Parse(head); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRequestParseConnect(b *testing.B) { benchRequest(b, benchConnect) }
func BenchmarkRequestParseGet(b *testing.B)     { benchRequest(b, benchGet) }

func BenchmarkResponseParse(b *testing.B) {
	var r Response
	b.SetBytes(int64(len(benchResponse)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Parse(benchResponse); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRequestAppendEndToEnd(b *testing.B) {
	var r Request
	if _, err := r.Parse(benchGet); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, len(benchGet))
	b.ReportAllocs()
	for b.Loop() {
		dst = r.AppendEndToEnd(dst[:0], benchGet, false, false)
	}
}

func BenchmarkUpstreamListParse(b *testing.B) {
	for _, bc := range []struct{ name, v string }{
		{"hostport", "proxy.example:3128"},
		{"credentials", "http://user:p%40ss@proxy.example:3128"},
		{"failover", "socks5h://u:p@[2001:db8::1]:1080, https://10.0.0.1, b.example:3128"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var l UpstreamList
			v := []byte(bc.v)
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Parse(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkChunkScanner(b *testing.B) {
	body := []byte("1000\r\n" + string(make([]byte, 4096)) + "\r\n0\r\n\r\n")
	var s ChunkScanner
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		s.Reset()
		if _, done, err := s.Scan(body); !done || err != nil {
			b.Fatal(err)
		}
	}
}

//go:build !race

package httpparse

import "testing"

// The race detector allocates, so these run only without it.

var (
	connectHead = []byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8.5.0\r\n" +
		"Proxy-Connection: Keep-Alive\r\nX-Proxy-To: http://user:p%40ss@proxy.example:3128\r\n\r\n")
	getHead = []byte("GET http://example.com/path/to/page?q=1&r=2 HTTP/1.1\r\nHost: example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Cookie: session=0123456789abcdef; theme=dark\r\nConnection: keep-alive, X-Trace\r\n" +
		"X-Trace: abc\r\nUpgrade-Insecure-Requests: 1\r\nX-Proxy-To: socks5h://u:p@[2001:db8::1]:1080, b:3128\r\n" +
		"Proxy-Authorization: Basic dTpw\r\n\r\n")
	responseHead = []byte("HTTP/1.1 200 OK\r\nDate: Mon, 27 Jul 2009 12:28:53 GMT\r\nServer: Apache\r\n" +
		"Content-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\nCache-Control: max-age=60\r\n" +
		"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nVary: Accept-Encoding\r\n\r\n")
	chunkedBody = []byte("1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\n")
)

func TestAllocs(t *testing.T) {
	var (
		req  Request
		resp Response
		list UpstreamList
		cs   ChunkScanner
		dst  = make([]byte, 0, 4096)
	)
	// Grow reusable storage once, as a connection would on its first request.
	mustOK(t, func() error { _, err := req.Parse(getHead); return err })
	mustOK(t, func() error { _, err := resp.Parse(responseHead); return err })
	mustOK(t, func() error { return list.Parse(req.XProxyTo.Bytes(getHead)) })
	mustOK(t, func() error { _, err := req.Parse(connectHead); return err })
	mustOK(t, func() error { return list.Parse([]byte("http://user:p%40ss@proxy.example:3128")) })
	mustOK(t, func() error {
		if _, done, err := cs.Scan(chunkedBody); err != nil || !done {
			t.Fatalf("chunked body: done %v err %v", done, err)
		}
		return nil
	})

	tests := []struct {
		name       string
		fn         func()
		wantAllocs float64
	}{
		{"Request.Parse CONNECT", func() { _, _ = req.Parse(connectHead) }, 0},
		{"Request.Parse GET 11 headers", func() { _, _ = req.Parse(getHead) }, 0},
		{"Response.Parse", func() { _, _ = resp.Parse(responseHead) }, 0},
		{"UpstreamList.Parse with credentials", func() { _ = list.Parse([]byte("http://user:p%40ss@proxy.example:3128")) }, 0},
		{"UpstreamList.Parse failover IPv6", func() { _ = list.Parse([]byte("socks5h://u:p@[2001:db8::1]:1080, b:3128")) }, 0},
		{"Request.AppendEndToEnd", func() {
			_, _ = req.Parse(getHead)
			dst = req.AppendEndToEnd(dst[:0], getHead, false, false)
		}, 0},
		{"Response.AppendEndToEnd", func() {
			_, _ = resp.Parse(responseHead)
			dst = resp.AppendEndToEnd(dst[:0], responseHead, false)
		}, 0},
		{"Upstream.AppendHostPort", func() { dst = list.List[0].AppendHostPort(dst[:0]) }, 0},
		{"AppendBasicAuth", func() { dst = AppendBasicAuth(dst[:0], list.List[0].User, list.List[0].Pass) }, 0},
		{"ChunkScanner.Scan", func() { cs.Reset(); _, _, _ = cs.Scan(chunkedBody) }, 0},
		{"SplitHostPort", func() { _, _, _, _ = SplitHostPort([]byte("[::1]:443"), 0) }, 0},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.fn); got != tt.wantAllocs {
			t.Errorf("%s: %v allocs per run, want %v", tt.name, got, tt.wantAllocs)
		}
	}
}

func mustOK(t *testing.T, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

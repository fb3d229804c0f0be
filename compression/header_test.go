package compression

import "testing"

func TestAppendHeader(t *testing.T) {
	tests := []struct {
		name    string
		lines   []string
		framing Framing
		want    string
	}{
		{
			"length body to HTTP/1.1: Content-Length out, chunked in, the rest byte for byte",
			[]string{"Date: Mon, 27 Jul 2009 12:28:53 GMT\r\n", "Content-Type:  text/html;charset=UTF-8 \r\n", "Content-Length: 4096\r\n",
				"X-Dup: 1\r\n", "x-dup: 2\r\n", "ETag: \"abc\"\r\n", "Connection: keep-alive\r\n", "Keep-Alive: timeout=5\r\n"},
			Chunked,
			"Date: Mon, 27 Jul 2009 12:28:53 GMT\r\nContent-Type:  text/html;charset=UTF-8 \r\nX-Dup: 1\r\nx-dup: 2\r\nETag: \"abc\"\r\n" +
				"Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
		},
		{
			"chunked body to HTTP/1.1: its Transfer-Encoding line stays, in place",
			[]string{"Content-Type: application/json\r\n", "transfer-encoding: chunked\r\n", "Server: x\r\n"},
			Chunked,
			"Content-Type: application/json\r\ntransfer-encoding: chunked\r\nServer: x\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
		},
		{
			"chunked body to HTTP/1.0: read until close, no framing line",
			[]string{"Content-Type: application/json\r\n", "Transfer-Encoding: chunked\r\n"},
			UntilClose,
			"Content-Type: application/json\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
		},
		{
			"length body to HTTP/1.0",
			[]string{"Content-Length: 5000\r\n", "Content-Type: text/plain\r\n"},
			UntilClose,
			"Content-Type: text/plain\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
		},
		{
			"Vary already naming Accept-Encoding is not repeated",
			[]string{"Content-Type: text/plain\r\n", "Vary: Origin, accept-encoding\r\n"},
			UntilClose,
			"Content-Type: text/plain\r\nVary: Origin, accept-encoding\r\nContent-Encoding: gzip\r\n",
		},
		{
			"Vary: * is not repeated",
			[]string{"Content-Type: text/plain\r\n", "Vary: *\r\n"},
			UntilClose,
			"Content-Type: text/plain\r\nVary: *\r\nContent-Encoding: gzip\r\n",
		},
		{
			"another Vary gets Accept-Encoding beside it",
			[]string{"Vary: Origin\r\n", "Content-Type: text/plain\r\n"},
			UntilClose,
			"Vary: Origin\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, buf := response(t, "200 OK", tt.lines...)
			if got := string(AppendHeader(nil, r, buf, tt.framing)); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	if FramingFor(0) != UntilClose || FramingFor(1) != Chunked {
		t.Error("FramingFor")
	}
}

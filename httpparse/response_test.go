package httpparse

import (
	"errors"
	"testing"
)

func TestResponseParse(t *testing.T) {
	tests := []struct {
		name          string
		in            string
		want          error
		status        int
		reason        string
		cl            int64
		chunked       bool
		untilClose    bool
		wantsClose    bool
		noBodyForHead bool
	}{
		{name: "200 length", in: "HTTP/1.1 200 OK|Content-Length: 5||", status: 200, reason: "OK", cl: 5},
		{name: "empty reason", in: "HTTP/1.1 204 |Connection: close||", status: 204, cl: -1, untilClose: true, wantsClose: true},
		{name: "no reason no SP", in: "HTTP/1.1 304||", status: 304, cl: -1, untilClose: true},
		{name: "reason with spaces", in: "HTTP/1.0 200 Connection established||", status: 200, reason: "Connection established", cl: -1, untilClose: true, wantsClose: true},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK|Connection: keep-alive|Content-Length: 0||", status: 200, reason: "OK", cl: 0},
		{name: "chunked", in: "HTTP/1.1 200 OK|Transfer-Encoding: chunked||", status: 200, reason: "OK", cl: -1, chunked: true},
		{name: "gzip until close", in: "HTTP/1.1 200 OK|Transfer-Encoding: gzip||", status: 200, reason: "OK", cl: -1, untilClose: true, wantsClose: true},
		{name: "until close", in: "HTTP/1.1 200 OK||", status: 200, reason: "OK", cl: -1, untilClose: true, wantsClose: true},
		{name: "1xx", in: "HTTP/1.1 100 Continue||", status: 100, reason: "Continue", cl: -1, untilClose: true},
		{name: "407", in: "HTTP/1.1 407 Proxy Authentication Required|Proxy-Authenticate: Basic realm=\"x\"|Content-Length: 0||", status: 407, reason: "Proxy Authentication Required", cl: 0},
		{name: "obs-text reason", in: "HTTP/1.1 200 \xe2\x9c\x93||", status: 200, reason: "\xe2\x9c\x93", cl: -1, untilClose: true, wantsClose: true},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 1\n\n", status: 200, reason: "OK", cl: 1},

		{name: "http/2", in: "HTTP/2.0 200 OK||", want: ErrBadStatusLine},
		{name: "no status", in: "HTTP/1.1 |", want: ErrBadStatusLine},
		{name: "two-digit status", in: "HTTP/1.1 20 OK||", want: ErrBadStatusLine},
		{name: "four-digit status", in: "HTTP/1.1 2000 OK||", want: ErrBadStatusLine},
		{name: "status 099", in: "HTTP/1.1 099 OK||", want: ErrBadStatusLine},
		{name: "two spaces", in: "HTTP/1.1  200 OK||", want: ErrBadStatusLine},
		{name: "NUL in reason", in: "HTTP/1.1 200 O\x00K||", want: ErrBadStatusLine},
		{name: "bare CR in reason", in: "HTTP/1.1 200 O\rK||", want: ErrBadStatusLine},
		{name: "obs-fold", in: "HTTP/1.1 200 OK|A: b| c||", want: ErrObsFold},
		{name: "space before colon", in: "HTTP/1.1 200 OK|A : b||", want: ErrBadHeader},
		{name: "te and cl", in: "HTTP/1.1 200 OK|Transfer-Encoding: chunked|Content-Length: 1||", want: ErrLengthAndChunked},
		{name: "conflicting cl", in: "HTTP/1.1 200 OK|Content-Length: 1|Content-Length: 2||", want: ErrConflictingContentLength},
		{name: "bad cl", in: "HTTP/1.1 200 OK|Content-Length: -1||", want: ErrBadContentLength},
		{name: "chunked not last", in: "HTTP/1.1 200 OK|Transfer-Encoding: chunked, gzip||", want: ErrUnsupportedTransferEncoding},
		{name: "te in http/1.0", in: "HTTP/1.0 200 OK|Transfer-Encoding: chunked||", want: ErrUnsupportedTransferEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := append(crlf(tt.in), "BODY"...)
			var r Response
			n, err := r.Parse(buf)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n != len(buf)-4 || r.HeadLen != n {
				t.Fatalf("n %d, want %d", n, len(buf)-4)
			}
			if r.Status != tt.status || string(r.Reason.Bytes(buf)) != tt.reason || r.ContentLength != tt.cl ||
				r.Chunked != tt.chunked || r.UntilClose() != tt.untilClose || r.WantsClose(false) != tt.wantsClose {
				t.Errorf("got status %d reason %q cl %d chunked %v untilClose %v wantsClose %v",
					r.Status, r.Reason.Bytes(buf), r.ContentLength, r.Chunked, r.UntilClose(), r.WantsClose(false))
			}
			for i := range n {
				var p Response
				if _, err := p.Parse(buf[:i]); err != ErrNeedMore {
					t.Fatalf("prefix %d: %v", i, err)
				}
			}
		})
	}
}

func TestResponseNoBody(t *testing.T) {
	for _, tt := range []struct {
		status  int
		reqHead bool
		want    bool
	}{{100, false, true}, {101, false, true}, {199, false, true}, {200, false, false}, {200, true, true},
		{204, false, true}, {304, false, true}, {404, false, false}, {500, true, true}} {
		r := Response{Status: tt.status}
		if got := r.NoBody(tt.reqHead); got != tt.want {
			t.Errorf("NoBody(%d, head=%v) = %v", tt.status, tt.reqHead, got)
		}
	}
}

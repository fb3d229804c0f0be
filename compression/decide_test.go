package compression

import (
	"strings"
	"testing"

	"github.com/proxyto/proxyto/httpparse"
)

// request parses a request head made of the given header lines.
func request(t testing.TB, method string, lines ...string) (*httpparse.Request, []byte) {
	t.Helper()
	buf := []byte(method + " http://example.com/ HTTP/1.1\r\nHost: example.com\r\n" + strings.Join(lines, "") + "\r\n")
	var r httpparse.Request
	if _, err := r.Parse(buf); err != nil {
		t.Fatalf("request: %v\n%s", err, buf)
	}
	return &r, buf
}

// response parses a response head with the given status line rest and
// header lines.
func response(t testing.TB, status string, lines ...string) (*httpparse.Response, []byte) {
	t.Helper()
	buf := []byte("HTTP/1.1 " + status + "\r\n" + strings.Join(lines, "") + "\r\n")
	var r httpparse.Response
	if _, err := r.Parse(buf); err != nil {
		t.Fatalf("response: %v\n%s", err, buf)
	}
	return &r, buf
}

func TestAcceptsGzip(t *testing.T) {
	for _, c := range []struct {
		lines []string
		want  bool
	}{
		{nil, false}, // no Accept-Encoding: the client did not say it can decode gzip
		{[]string{"Accept-Encoding: gzip\r\n"}, true},
		{[]string{"Accept-Encoding: gzip, deflate, br\r\n"}, true},
		{[]string{"accept-encoding: GZIP\r\n"}, true},
		{[]string{"Accept-Encoding: x-gzip\r\n"}, true},
		{[]string{"Accept-Encoding: br, zstd\r\n"}, false},
		{[]string{"Accept-Encoding: identity\r\n"}, false},
		{[]string{"Accept-Encoding: \r\n"}, false},
		{[]string{"Accept-Encoding: gzip;q=0\r\n"}, false},
		{[]string{"Accept-Encoding: gzip; q=0.000\r\n"}, false},
		{[]string{"Accept-Encoding: gzip;Q=0.\r\n"}, false},
		{[]string{"Accept-Encoding: gzip;q=0.001\r\n"}, true},
		{[]string{"Accept-Encoding: gzip;q=0.5\r\n"}, true},
		{[]string{"Accept-Encoding: gzip;q=1\r\n"}, true},
		{[]string{"Accept-Encoding: gzip;q=1.000\r\n"}, true},
		{[]string{"Accept-Encoding: gzip;q=1.5\r\n"}, false}, // not a qvalue: weight zero
		{[]string{"Accept-Encoding: gzip;q=abc\r\n"}, false},
		{[]string{"Accept-Encoding: gzip;q=0.0001\r\n"}, false},
		{[]string{"Accept-Encoding: gzip;level=9\r\n"}, true}, // other parameters do not weigh
		{[]string{"Accept-Encoding: *\r\n"}, true},
		{[]string{"Accept-Encoding: *;q=0\r\n"}, false},
		{[]string{"Accept-Encoding: gzip;q=0, *\r\n"}, false}, // the explicit refusal wins
		{[]string{"Accept-Encoding: *, gzip;q=0\r\n"}, false},
		{[]string{"Accept-Encoding: br\r\n", "Accept-Encoding: gzip\r\n"}, true}, // split over fields
		{[]string{"Accept-Encoding: gzip\r\n", "Accept-Encoding: gzip;q=0\r\n"}, false},
		{[]string{"Accept-Encoding: ,, gzip ,\r\n"}, true},
		{[]string{"Accept-Encodings: gzip\r\n"}, false},
	} {
		r, buf := request(t, "GET", c.lines...)
		if got := AcceptsGzip(r, buf); got != c.want {
			t.Errorf("%q: AcceptsGzip = %v, want %v", c.lines, got, c.want)
		}
	}
}

// TestDecide holds Decide to each rule of the contract, one row per rule
// and its edges.
func TestDecide(t *testing.T) {
	const html = "Content-Type: text/html; charset=utf-8\r\n"
	const big = "Content-Length: 4096\r\n"
	type row struct {
		name    string
		accepts bool
		head    bool
		status  string
		lines   []string
		want    Reason
	}
	tests := []row{
		{"text/html, known length >= 1 KiB", true, false, "200 OK", []string{html, big}, Compress},
		{"exactly 1 KiB", true, false, "200 OK", []string{html, "Content-Length: 1024\r\n"}, Compress},
		{"chunked: unknown length", true, false, "200 OK", []string{html, "Transfer-Encoding: chunked\r\n"}, Compress},
		{"until close: unknown length", true, false, "200 OK", []string{html}, Compress},
		{"other statuses with a body", true, false, "404 Not Found", []string{html, big}, Compress},

		{"client does not accept gzip", false, false, "200 OK", []string{html, big}, NotAccepted},
		{"HEAD", true, true, "200 OK", []string{html, big}, HeadRequest},
		{"204", true, false, "204 No Content", []string{html}, NoBody},
		{"304", true, false, "304 Not Modified", []string{html, big}, NoBody},
		{"1xx", true, false, "103 Early Hints", []string{html}, NoBody},
		{"206", true, false, "206 Partial Content", []string{html, big, "Content-Range: bytes 0-4095/9999\r\n"}, Partial},
		{"Content-Encoding gzip", true, false, "200 OK", []string{html, big, "Content-Encoding: gzip\r\n"}, AlreadyEncoded},
		{"Content-Encoding br", true, false, "200 OK", []string{html, big, "content-encoding: br\r\n"}, AlreadyEncoded},
		{"Content-Encoding identity", true, false, "200 OK", []string{html, big, "Content-Encoding: identity\r\n"}, AlreadyEncoded},
		{"transfer coding besides chunked", true, false, "200 OK", []string{html, "Transfer-Encoding: gzip, chunked\r\n"}, TransferCoded},
		{"no Content-Type", true, false, "200 OK", []string{big}, NotText},
		{"image/png", true, false, "200 OK", []string{"Content-Type: image/png\r\n", big}, NotText},
		{"application/octet-stream", true, false, "200 OK", []string{"Content-Type: application/octet-stream\r\n", big}, NotText},
		{"no-transform", true, false, "200 OK", []string{html, big, "Cache-Control: public, No-Transform\r\n"}, NoTransform},
		{"no-transform in a second field", true, false, "200 OK", []string{html, big, "Cache-Control: max-age=60\r\n", "Cache-Control: no-transform\r\n"}, NoTransform},
		{"other Cache-Control", true, false, "200 OK", []string{html, big, "Cache-Control: no-cache, max-age=0\r\n"}, Compress},
		{"below 1 KiB", true, false, "200 OK", []string{html, "Content-Length: 1023\r\n"}, TooSmall},
		{"empty", true, false, "200 OK", []string{html, "Content-Length: 0\r\n"}, TooSmall},
	}
	for _, ct := range []string{
		"text/plain", "TEXT/CSS", "text/event-stream", "application/json", "application/ld+json; charset=utf-8",
		"application/problem+json", "application/javascript", "text/javascript", "application/xml",
		"image/svg+xml", "application/rss+xml", "application/xhtml+xml",
	} {
		tests = append(tests, row{"text-like " + ct, true, false, "200 OK", []string{"Content-Type: " + ct + "\r\n", big}, Compress})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, buf := response(t, tt.status, tt.lines...)
			if got := Decide(tt.accepts, tt.head, r, buf); got != tt.want {
				t.Errorf("Decide = %v, want %v", got, tt.want)
			}
		})
	}
	for r := Reason(0); r < NumReasons; r++ {
		if r.String() == "" || r.String() == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

// FuzzAcceptsGzip checks AcceptsGzip's invariants on any Accept-Encoding
// value: a trailing explicit refusal always refuses, and a value that does
// not mention gzip is decided by "*" alone.
func FuzzAcceptsGzip(f *testing.F) {
	for _, s := range []string{"gzip", "gzip;q=0", "*;q=0.5", "br, gzip;q=0.8", "x-gzip;q=1.0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsAny(v, "\r\n\x00") {
			return
		}
		r, buf, ok := tryRequest("Accept-Encoding: " + v + "\r\n")
		if !ok {
			return
		}
		got := AcceptsGzip(r, buf)
		if r2, buf2, ok := tryRequest("Accept-Encoding: " + v + "\r\nAccept-Encoding: gzip;q=0\r\n"); ok && AcceptsGzip(r2, buf2) {
			t.Fatalf("%q plus gzip;q=0 accepted", v)
		}
		if !strings.Contains(strings.ToLower(v), "gzip") {
			r3, buf3, _ := tryRequest("Accept-Encoding: " + v + "\r\nAccept-Encoding: *;q=0\r\n")
			if AcceptsGzip(r3, buf3) != got {
				t.Fatalf("%q: a zero-weight * changed the verdict without a gzip entry", v)
			}
		}
	})
}

func tryRequest(lines string) (*httpparse.Request, []byte, bool) {
	buf := []byte("GET / HTTP/1.1\r\nHost: a\r\n" + lines + "\r\n")
	var r httpparse.Request
	_, err := r.Parse(buf)
	return &r, buf, err == nil
}

//go:build !race

package compression

import "testing"

func TestAllocs(t *testing.T) {
	req, rbuf := request(t, "GET", "Accept-Encoding: gzip;q=0.8, br\r\n")
	resp, buf := response(t, "200 OK", "Content-Type: application/json\r\n", "Transfer-Encoding: chunked\r\n", "Cache-Control: no-cache\r\n")
	p := NewPool(1)
	body := texts(t)["json"][:3*BlockSize]
	dst := make([]byte, 0, 2*len(body))
	// Warm the pools (the encoder's, and klauspost's token and bit-writer
	// pools) as a running process would be.
	e := p.Get(Chunked)
	e.Close(e.Append(dst, body))
	for _, c := range []struct {
		name string
		fn   func()
	}{
		{"AcceptsGzip", func() { _ = AcceptsGzip(req, rbuf) }},
		{"Decide", func() { _ = Decide(true, false, resp, buf) }},
		{"AppendHeader", func() { dst = AppendHeader(dst[:0], resp, buf, Chunked) }},
		{"Get, Append, Flush, Close", func() {
			e := p.Get(Chunked)
			dst = e.Close(e.Flush(e.Append(dst[:0], body)))
		}},
	} {
		if n := testing.AllocsPerRun(20, c.fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", c.name, n)
		}
	}
}

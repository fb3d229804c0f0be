package compression

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"testing"

	kpgzip "github.com/klauspost/compress/gzip"
)

// BenchmarkEncoder measures the Encoder on real text, fed in 16 KiB reads
// with a Flush after each (the engine's worst case: every read is a batch),
// and reports the compressed size as a percentage of the input. The
// stateful gzip writers it was chosen over run beside it, fed the same way:
//
//	go test -run '^$' -bench Encoder -benchmem ./compression
func BenchmarkEncoder(b *testing.B) {
	type writer interface {
		io.WriteCloser
		Reset(io.Writer)
		Flush() error
	}
	ours := func(b *testing.B, src []byte) int {
		p := NewPool(1)
		out := make([]byte, 0, len(src))
		var n int
		for b.Loop() {
			e := p.Get(Chunked)
			out = out[:0]
			for s := src; len(s) > 0; {
				k := min(len(s), 16<<10)
				out = e.Flush(e.Append(out, s[:k]))
				s = s[k:]
			}
			out = e.Close(out)
			n = len(out)
		}
		return n
	}
	stateful := func(w writer) func(*testing.B, []byte) int {
		return func(b *testing.B, src []byte) int {
			var out bytes.Buffer
			out.Grow(len(src))
			for b.Loop() {
				out.Reset()
				w.Reset(&out)
				for s := src; len(s) > 0; {
					k := min(len(s), 16<<10)
					_, _ = w.Write(s[:k])
					_ = w.Flush()
					s = s[k:]
				}
				_ = w.Close()
			}
			return out.Len()
		}
	}
	std1, _ := stdgzip.NewWriterLevel(nil, 1)
	std6, _ := stdgzip.NewWriterLevel(nil, 6)
	kp1, _ := kpgzip.NewWriterLevel(nil, 1)
	for _, c := range []struct {
		name string
		run  func(*testing.B, []byte) int
	}{
		{"stateless", ours},
		{"compress-gzip-1", stateful(std1)},
		{"compress-gzip-6", stateful(std6)},
		{"klauspost-gzip-1", stateful(kp1)},
	} {
		for name, src := range texts(b) {
			b.Run(c.name+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(len(src)))
				b.ReportAllocs()
				n := c.run(b, src)
				b.ReportMetric(100*float64(n)/float64(len(src)), "%size")
			})
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	req, rbuf := request(b, "GET", "Accept: */*\r\n", "Accept-Encoding: gzip, deflate, br;q=0.9\r\n", "User-Agent: x\r\n")
	resp, buf := response(b, "200 OK", "Date: Mon, 27 Jul 2009 12:28:53 GMT\r\n", "Content-Type: text/html; charset=utf-8\r\n",
		"Cache-Control: max-age=60\r\n", "Content-Length: 12345\r\n", "Vary: Origin\r\n")
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if Decide(AcceptsGzip(req, rbuf), false, resp, buf) != Compress {
			b.Fatal("not compressed")
		}
		dst = AppendHeader(dst[:0], resp, buf, Chunked)
	}
}

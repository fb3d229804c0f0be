package compression

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"net/http/httputil"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/proxyto/proxyto/httpparse"
)

// texts returns real text bodies from the Go installation: HTML, JSON and
// Go source.
func texts(t testing.TB) map[string][]byte {
	t.Helper()
	root := runtime.GOROOT()
	m := map[string][]byte{}
	for name, p := range map[string]string{
		"html": "doc/go_spec.html",
		"json": "src/cmd/vendor/golang.org/x/arch/arm64/arm64asm/inst.json",
		"go":   "src/net/http/server.go",
	} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Skipf("no %s in GOROOT: %v", p, err)
		}
		m[name] = b
	}
	return m
}

// compress runs body through an Encoder in pieces of the sizes sizes gives,
// flushing after a piece when flush says so, and returns the wire bytes.
func compress(t testing.TB, p *Pool, f Framing, body []byte, piece func() int, flush func() bool) []byte {
	t.Helper()
	e := p.Get(f)
	if e == nil {
		t.Fatal("pool refused an encoder")
	}
	var out []byte
	for len(body) > 0 {
		n := min(len(body), piece())
		out = e.Append(out, body[:n])
		body = body[n:]
		if flush() {
			out = e.Flush(out)
		}
	}
	return e.Close(out)
}

// decode undoes the framing and the gzip coding, checking the chunked
// framing with both httpparse's scanner and net/http's reader.
func decode(t testing.TB, f Framing, wire []byte) []byte {
	t.Helper()
	gz := wire
	if f == Chunked {
		var s httpparse.ChunkScanner
		n, done, err := s.Scan(wire)
		if err != nil || !done || n != len(wire) {
			t.Fatalf("chunked framing: n %d of %d, done %v, err %v", n, len(wire), done, err)
		}
		if gz, err = io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(wire))); err != nil {
			t.Fatalf("net/http chunked reader: %v", err)
		}
	}
	br := bytes.NewReader(gz) // an io.ByteReader: gzip reads no further than the member
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	zr.Multistream(false)
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if br.Len() != 0 {
		t.Fatalf("%d bytes after the gzip member", br.Len())
	}
	return plain
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 300<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	bodies := map[string][]byte{"random": random}
	for k, v := range texts(t) {
		bodies[k] = v
	}
	sizes := []int{0, 1, 100, 1023, 1024, BlockSize - 1, BlockSize, BlockSize + 1, 2*BlockSize + 7, 100 << 10, 300 << 10}
	pieces := map[string]func() int{
		"1 byte":      func() int { return 1 },
		"7 bytes":     func() int { return 7 },
		"1460":        func() int { return 1460 },
		"64 KiB":      func() int { return 64 << 10 },
		"random size": func() int { return 1 + rng.IntN(40000) },
	}
	if raceEnabled {
		delete(bodies, "go")
		delete(bodies, "json")
		sizes = []int{0, 1, 1024, BlockSize, BlockSize + 1, 100 << 10}
	}
	p := NewPool(4)
	for name, src := range bodies {
		for _, size := range sizes {
			if size > len(src) {
				continue
			}
			body := src[:size]
			for pname, piece := range pieces {
				// Small pieces of large bodies only repeat what the
				// smaller sizes cover, slowly.
				if pname == "1 byte" && size > 2000 || pname == "7 bytes" && size > 40000 ||
					size > 2*BlockSize+7 && pname == "7 bytes" {
					continue
				}
				flushes := []int{0, 1, 5}
				if size > 2*BlockSize+7 || raceEnabled {
					flushes = []int{0, 5}
				}
				for _, f := range []Framing{Chunked, UntilClose} {
					for _, flushEvery := range flushes {
						k := 0
						flush := func() bool { k++; return flushEvery > 0 && k%flushEvery == 0 }
						wire := compress(t, p, f, body, piece, flush)
						if got := decode(t, f, wire); !bytes.Equal(got, body) {
							t.Fatalf("%s[:%d] in %s pieces, framing %d, flush every %d: round trip changed it (%d bytes back)",
								name, size, pname, f, flushEvery, len(got))
						}
					}
				}
			}
		}
	}
	if p.Active() != 0 {
		t.Errorf("%d encoders still out", p.Active())
	}
}

// TestFlushDeliversEverything checks that after Flush the client can decode
// every byte given so far: a streamed response is never held back.
func TestFlushDeliversEverything(t *testing.T) {
	p := NewPool(1)
	e := p.Get(UntilClose)
	defer e.Abort()
	var wire []byte
	var sent []byte
	for i := range 5 {
		msg := bytes.Repeat([]byte{'a' + byte(i)}, 10+i*100)
		sent = append(sent, msg...)
		wire = e.Flush(e.Append(wire, msg))
		zr, err := gzip.NewReader(bytes.NewReader(wire))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(sent))
		if _, err := io.ReadFull(zr, got); err != nil || !bytes.Equal(got, sent) {
			t.Fatalf("after flush %d: %v", i, err)
		}
	}
}

func TestPoolBound(t *testing.T) {
	p := NewPool(2)
	a, b := p.Get(Chunked), p.Get(UntilClose)
	if a == nil || b == nil {
		t.Fatal("pool of 2 refused one of the first two")
	}
	if c := p.Get(Chunked); c != nil {
		t.Fatal("a third encoder beyond the bound: the caller must fall back to identity")
	}
	a.Close(nil)
	c := p.Get(Chunked)
	if c == nil {
		t.Fatal("a freed slot was not reused")
	}
	b.Abort()
	c.Abort()
	if p.Active() != 0 {
		t.Errorf("Active = %d after all returned", p.Active())
	}
	if NewPool(0).max != DefaultMaxEncoders {
		t.Error("NewPool(0) does not use the default bound")
	}
}

// FuzzRoundTrip compresses arbitrary bodies in arbitrary pieces.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello, hello, hello"), uint16(3), true)
	f.Add(bytes.Repeat([]byte("abc"), 20000), uint16(1000), false)
	p := NewPool(1)
	f.Fuzz(func(t *testing.T, body []byte, step uint16, chunked bool) {
		fr := UntilClose
		if chunked {
			fr = Chunked
		}
		k := 0
		wire := compress(t, p, fr, body, func() int { return int(step) + 1 }, func() bool { k++; return k%3 == 0 })
		if got := decode(t, fr, wire); !bytes.Equal(got, body) {
			t.Fatal("round trip changed the body")
		}
	})
}

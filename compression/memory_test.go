//go:build !race

package compression

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"io"
	"net/http/httputil"
	"runtime"
	"testing"
)

// Memory is measured without the race detector, which changes what
// allocations cost and slows the 64 MiB stream some fifty times.

// TestStreamBoundedHeap compresses a 64 MiB body streamed in 64 KiB reads,
// decoding it on the fly, and checks that the live heap does not grow with
// the body: memory per response is the encoder's, not the body's.
func TestStreamBoundedHeap(t *testing.T) {
	const total = 64 << 20
	p := NewPool(1)
	e := p.Get(Chunked)
	src := texts(t)["html"]
	pr, pw := io.Pipe()
	sum := make(chan [32]byte, 1)
	go func() {
		zr, err := gzip.NewReader(httputil.NewChunkedReader(pr))
		if err != nil {
			_ = pr.CloseWithError(err)
			sum <- [32]byte{}
			return
		}
		h := sha256.New()
		_, err = io.Copy(h, zr)
		_ = pr.CloseWithError(err)
		sum <- [32]byte(h.Sum(nil))
	}()
	want := sha256.New()
	read := make([]byte, 64<<10)
	out := make([]byte, 0, 128<<10)
	var base, peak uint64
	off := 0
	for sent := 0; sent < total; sent += len(read) {
		for i := range read { // the next 64 KiB of an endless HTML page
			read[i] = src[off]
			off = (off + 1) % len(src)
		}
		want.Write(read)
		out = e.Flush(e.Append(out[:0], read))
		if _, err := pw.Write(out); err != nil {
			t.Fatal(err)
		}
		if sent%(8<<20) == 0 {
			heap := liveHeap()
			if sent == 0 {
				base = heap
			}
			peak = max(peak, heap)
		}
	}
	out = e.Close(out[:0])
	if _, err := pw.Write(out); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	if got := <-sum; got != [32]byte(want.Sum(nil)) {
		t.Fatal("64 MiB came back different")
	}
	t.Logf("live heap: %d KiB at the start, %d KiB at most while streaming 64 MiB", base>>10, peak>>10)
	if peak > base+(1<<20) {
		t.Errorf("live heap grew by %d KiB while streaming: memory is not bounded", (peak-base)>>10)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemoryPerEncoder measures what an active encoder holds between calls
// (its pending input) and checks it is about BlockSize.
func TestMemoryPerEncoder(t *testing.T) {
	const n = 200
	p := NewPool(n)
	src := bytes.Repeat([]byte(`{"key": "value", "n": 12345},`), BlockSize/2/30)
	base := liveHeap()
	encs := make([]*Encoder, n)
	var sink []byte
	for i := range encs {
		encs[i] = p.Get(Chunked)
		sink = encs[i].Append(sink[:0], src) // half a block pending
	}
	per := float64(liveHeap()-base) / n
	t.Logf("an active encoder holds %.0f bytes (BlockSize %d)", per, BlockSize)
	if per > 1.25*BlockSize {
		t.Errorf("an active encoder holds %.0f bytes, want about BlockSize (%d)", per, BlockSize)
	}
	for _, e := range encs {
		e.Abort()
	}
	runtime.KeepAlive(sink)
}

package compression

import (
	"hash/crc32"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"
)

// Why klauspost/compress's stateless deflate: a stateful gzip writer keeps
// its window and hash tables between writes, about 0.8-1.2 MB per response
// being compressed (compress/gzip at levels 1-6, klauspost at levels 1-6),
// so a few thousand concurrent compressed responses would cost gigabytes.
// flate.StatelessDeflate keeps nothing between calls (its tables live on the
// caller's stack and in pools for the duration of one call), compresses
// faster than compress/gzip level 1, and within a few points of its ratio
// when given blocks of 16-32 KiB. An Encoder therefore holds only the input
// it has not compressed yet, at most BlockSize bytes. Brotli was measured
// and not taken: its cheap levels (0-1) compress no better than this at
// half the speed with 250+ KiB of state, its better ones need megabytes.

// BlockSize is the most input an Encoder holds before compressing it: the
// largest block flate.StatelessDeflate compresses in one piece. It is what
// an active Encoder costs, besides a few dozen bytes.
const BlockSize = 1<<15 - 1

// DefaultMaxEncoders is the Pool bound NewPool uses for max <= 0.
const DefaultMaxEncoders = 1024

// gzipHeader is the fixed member header (RFC 1952 §2.3): deflate, no flags,
// no modification time, no extra flags, unknown OS.
var gzipHeader = [10]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

// Pool hands out Encoders, at most max at a time, and recycles them. It is
// safe for concurrent use.
type Pool struct {
	max    int64
	active atomic.Int64
	encs   sync.Pool
}

// NewPool returns a Pool of at most max active Encoders; max <= 0 means
// DefaultMaxEncoders. Memory for compression is then bounded by about
// max * BlockSize bytes.
func NewPool(max int) *Pool {
	if max <= 0 {
		max = DefaultMaxEncoders
	}
	p := &Pool{max: int64(max)}
	p.encs.New = func() any { return &Encoder{pending: make([]byte, 0, BlockSize)} }
	return p
}

// Get returns an Encoder for one response body delimited by f, or nil when
// max Encoders are active: the caller then sends that response uncompressed
// (decide before writing its head). Every Encoder obtained must end with
// Close or Abort.
func (p *Pool) Get(f Framing) *Encoder {
	for {
		n := p.active.Load()
		if n >= p.max {
			return nil
		}
		if p.active.CompareAndSwap(n, n+1) {
			break
		}
	}
	e := p.encs.Get().(*Encoder)
	e.pool, e.framing = p, f
	return e
}

// Active returns how many Encoders are out.
func (p *Pool) Active() int { return int(p.active.Load()) }

// Encoder gzips one response body as it streams: body bytes in, gzip
// member out, chunk-framed for Chunked. Output is appended to the caller's
// buffer; the Encoder keeps at most BlockSize bytes of input between calls.
// Not safe for concurrent use.
type Encoder struct {
	pool    *Pool
	framing Framing
	pending []byte   // input not compressed yet; cap BlockSize
	crc     uint32   // CRC-32 of all input so far
	size    uint32   // input length mod 2^32 (gzip's ISIZE)
	started bool     // the gzip header went out
	out     appender // where StatelessDeflate writes: the caller's dst
}

// appender is an io.Writer that appends to a byte slice. It never fails,
// so neither does StatelessDeflate writing to it.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// Append takes body bytes (the data only: an upstream's chunk framing is
// removed first, see httpparse.ChunkScanner.ScanData) and appends whatever
// compressed output is ready to dst. Output appears once BlockSize bytes
// are pending, or at Flush.
func (e *Encoder) Append(dst, data []byte) []byte {
	for len(data) > 0 {
		if len(e.pending) == 0 && len(data) >= BlockSize {
			dst = e.emit(dst, data[:BlockSize], false)
			data = data[BlockSize:]
			continue
		}
		n := copy(e.pending[len(e.pending):BlockSize], data)
		e.pending = e.pending[:len(e.pending)+n]
		data = data[n:]
		if len(e.pending) == BlockSize {
			dst = e.emit(dst, e.pending, false)
			e.pending = e.pending[:0]
		}
	}
	return dst
}

// Flush compresses what is pending and appends it to dst, so that the
// client can decode every byte given so far. Call it when no more body
// bytes are at hand (the end of a read from the upstream), or a slowly
// streamed response would wait in the Encoder. Each Flush that has pending
// input costs about 10 bytes of output.
func (e *Encoder) Flush(dst []byte) []byte {
	if len(e.pending) == 0 {
		return dst
	}
	dst = e.emit(dst, e.pending, false)
	e.pending = e.pending[:0]
	return dst
}

// Close appends the rest of the body: pending input, the end of the deflate
// stream, the gzip trailer and, for Chunked, the last chunk. It returns the
// Encoder to its Pool; e must not be used afterwards.
func (e *Encoder) Close(dst []byte) []byte {
	dst = e.emit(dst, e.pending, true)
	if e.framing == Chunked {
		dst = append(dst, "0\r\n\r\n"...)
	}
	e.release()
	return dst
}

// Abort returns the Encoder to its Pool without finishing the body (the
// exchange failed). e must not be used afterwards.
func (e *Encoder) Abort() { e.release() }

func (e *Encoder) release() {
	p := e.pool
	*e = Encoder{pending: e.pending[:0]}
	p.encs.Put(e)
	p.active.Add(-1)
}

// chunkReserve is room left for a chunk-size line ahead of compressed
// output: up to 5 hex digits (an emit writes less than 1 MiB) and CRLF.
const chunkReserve = 7

// emit compresses block (eof: the last one) and appends the output to dst:
// the gzip header first, the trailer after the last block, each emit's
// output one chunk for Chunked.
func (e *Encoder) emit(dst, block []byte, eof bool) []byte {
	start := len(dst)
	if e.framing == Chunked {
		dst = append(dst, make([]byte, chunkReserve)...)
	}
	body := len(dst)
	if !e.started {
		dst = append(dst, gzipHeader[:]...)
		e.started = true
	}
	e.crc = crc32.Update(e.crc, crc32.IEEETable, block)
	e.size += uint32(len(block))
	e.out.b = dst
	_ = flate.StatelessDeflate(&e.out, block, eof, nil) // appender never fails
	dst, e.out.b = e.out.b, nil
	if eof {
		dst = append(dst, byte(e.crc), byte(e.crc>>8), byte(e.crc>>16), byte(e.crc>>24),
			byte(e.size), byte(e.size>>8), byte(e.size>>16), byte(e.size>>24))
	}
	if e.framing != Chunked {
		return dst
	}
	// Write the size line in front of the output, then close the gap the
	// reserve left: chunk sizes stay canonical (no leading zeros).
	var line [chunkReserve]byte
	sz := strconv.AppendUint(line[:0], uint64(len(dst)-body), 16)
	sz = append(sz, '\r', '\n')
	gap := chunkReserve - len(sz)
	copy(dst[start:], sz)
	copy(dst[start+len(sz):], dst[body:])
	dst = dst[:len(dst)-gap]
	return append(dst, '\r', '\n')
}

package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// SmallBody is what the origins serve at /small: 1 KiB of printable bytes.
var SmallBody = func() []byte {
	b := make([]byte, 1024)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	b[len(b)-1] = '\n'
	return b
}()

// patternBlock is the deterministic byte pattern that sources send: byte i of
// a stream is patternBlock[i%len(patternBlock)]. Its length is prime-ish
// relative to common buffer sizes so misaligned copies change the checksum.
var patternBlock = func() []byte {
	b := make([]byte, 65521)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}()

// PatternReader returns a reader of the first n bytes of the pattern.
func PatternReader(n int64) io.Reader { return &patternReader{left: n} }

type patternReader struct{ off, left int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := 0
	for n < len(p) {
		i := int((r.off + int64(n)) % int64(len(patternBlock)))
		n += copy(p[n:], patternBlock[i:])
	}
	r.off += int64(n)
	r.left -= int64(n)
	return n, nil
}

// PatternSHA256 returns the hex sha256 of the first n bytes of the pattern.
func PatternSHA256(n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, PatternReader(n))
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256Hex returns the hex sha256 of b.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// RawResult is what a raw origin observed on one connection.
type RawResult struct {
	// Bytes is how many bytes it read from the client.
	Bytes int64
	// SHA256 is the hex sha256 of those bytes.
	SHA256 string
	// Err is the read error that ended the connection, nil on a clean EOF.
	Err error
}

// RawOrigin is a raw TCP server on 127.0.0.1 that runs one behaviour per
// connection (see the Start*Origin functions).
type RawOrigin struct {
	// Addr is "127.0.0.1:P".
	Addr string

	ln       net.Listener
	accepted atomic.Int64
	results  chan RawResult
	set      connSet
}

func startRaw(t TB, handle func(c *net.TCPConn, o *RawOrigin)) *RawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: raw origin listen: %v", err)
	}
	o := &RawOrigin{Addr: ln.Addr().String(), ln: ln, results: make(chan RawResult, 1024)}
	o.set.serve(ln, func(c net.Conn) {
		o.accepted.Add(1)
		handle(c.(*net.TCPConn), o)
	})
	t.Cleanup(o.Close)
	return o
}

// Close stops the listener and closes every connection.
func (o *RawOrigin) Close() { o.set.close(o.ln) }

// Accepted returns the number of connections accepted so far.
func (o *RawOrigin) Accepted() int64 { return o.accepted.Load() }

// Result waits up to timeout for the next connection's RawResult (for origins
// that record one: sink, reply-after-EOF, FIN-first) and fails the test if
// none comes.
func (o *RawOrigin) Result(t TB, timeout time.Duration) RawResult {
	t.Helper()
	select {
	case r := <-o.results:
		return r
	case <-time.After(timeout):
		t.Fatalf("harness: no result from raw origin %s within %v", o.Addr, timeout)
		return RawResult{}
	}
}

// readAll reads c to EOF (at most chunk bytes per read, sleeping pause after
// each read when pause > 0) and returns count, sha256 and the error that
// ended reading (nil for EOF).
func readAll(c net.Conn, chunk int, pause time.Duration) RawResult {
	if chunk <= 0 {
		chunk = 256 << 10
	}
	h := sha256.New()
	buf := make([]byte, chunk)
	var n int64
	var err error
	for {
		var k int
		k, err = c.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
		}
		if err != nil {
			break
		}
		if pause > 0 {
			time.Sleep(pause) // rate shaping: this is what makes the sink slow
		}
	}
	if err == io.EOF {
		err = nil
	}
	return RawResult{Bytes: n, SHA256: hexSum(h), Err: err}
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// StartTCPOrigin runs handle on each connection (closed when handle
// returns): a raw target whose behaviour the test writes.
func StartTCPOrigin(t TB, handle func(c *net.TCPConn)) *RawOrigin {
	return startRaw(t, func(c *net.TCPConn, _ *RawOrigin) { handle(c) })
}

// StartSilentOrigin reads each connection to EOF and never writes.
func StartSilentOrigin(t TB) *RawOrigin {
	return startRaw(t, func(c *net.TCPConn, _ *RawOrigin) { _, _ = io.Copy(io.Discard, c) })
}

// StartEchoOrigin echoes every byte back; on the client's FIN it finishes
// echoing and half-closes its side.
func StartEchoOrigin(t TB) *RawOrigin {
	return startRaw(t, func(c *net.TCPConn, o *RawOrigin) {
		if _, err := io.Copy(c, c); err == nil {
			c.CloseWrite()
		}
	})
}

// SinkOptions shape how a sink reads. The zero value reads as fast as it can.
type SinkOptions struct {
	// ReadSize is the most bytes read per read call. Default 256 KiB.
	ReadSize int
	// Pause is slept after each read, which makes the sink slow
	// (ReadSize/Pause bytes per second at most).
	Pause time.Duration
}

// StartSinkOrigin reads each connection to EOF, then reports count and
// sha256 (Result) and closes.
func StartSinkOrigin(t TB, opt SinkOptions) *RawOrigin {
	return startRaw(t, func(c *net.TCPConn, o *RawOrigin) {
		o.results <- readAll(c, opt.ReadSize, opt.Pause)
	})
}

// StartSourceOrigin writes n bytes of the pattern as fast as it can, then
// half-closes, waits (bounded) for the client's EOF and closes.
func StartSourceOrigin(t TB, n int64) *RawOrigin {
	return startRaw(t, func(c *net.TCPConn, o *RawOrigin) {
		if _, err := io.Copy(c, PatternReader(n)); err != nil {
			return
		}
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(time.Minute))
		io.Copy(io.Discard, c)
	})
}

// ReplyAfterEOF formats the reply of StartReplyAfterEOFOrigin.
func ReplyAfterEOF(n int64, sha string) string {
	return fmt.Sprintf("got %d bytes sha256 %s\n", n, sha)
}

// StartReplyAfterEOFOrigin reads until the client's FIN, then writes
// ReplyAfterEOF(count, sha256) and closes. It also reports a Result.
func StartReplyAfterEOFOrigin(t TB) *RawOrigin {
	return startRaw(t, func(c *net.TCPConn, o *RawOrigin) {
		r := readAll(c, 0, 0)
		if r.Err == nil {
			io.WriteString(c, ReplyAfterEOF(r.Bytes, r.SHA256))
			c.CloseWrite()
		}
		o.results <- r
	})
}

// FINFirstGreeting is what StartFINFirstOrigin writes before its FIN.
const FINFirstGreeting = "HELLO FROM THE ORIGIN; I AM DONE TALKING\n"

// StartFINFirstOrigin writes FINFirstGreeting, half-closes its write side at
// once, then reads the client to EOF and reports count and sha256 (Result).
func StartFINFirstOrigin(t TB) *RawOrigin {
	return startRaw(t, func(c *net.TCPConn, o *RawOrigin) {
		if _, err := io.WriteString(c, FINFirstGreeting); err != nil {
			o.results <- RawResult{Err: err}
			return
		}
		c.CloseWrite()
		o.results <- readAll(c, 0, 0)
	})
}

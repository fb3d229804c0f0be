package tunnel

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/httpparse"
)

// memConn is the part of gnet.Conn a Pipe uses: bytes to read, fed by the
// test, and everything written, kept. queued fakes the destination's
// outbound queue. Any other method panics (nil embedded interface).
type memConn struct {
	gnet.Conn
	in     []byte
	out    []byte
	queued int
}

func (m *memConn) Peek(int) ([]byte, error) { return m.in, nil }
func (m *memConn) Discard(n int) (int, error) {
	n = min(max(n, 0), len(m.in))
	// Slide the rest down rather than reslice, so that feeding again
	// reuses the buffer.
	m.in = m.in[:copy(m.in, m.in[n:])]
	return n, nil
}
func (m *memConn) InboundBuffered() int        { return len(m.in) }
func (m *memConn) OutboundBuffered() int       { return m.queued }
func (m *memConn) Fd() int                     { return -1 }
func (m *memConn) Write(p []byte) (int, error) { m.out = append(m.out, p...); return len(p), nil }
func (m *memConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		m.out = append(m.out, b...)
		n += len(b)
	}
	return n, nil
}

// upper is a Transform whose output shows each call: data upper-cased,
// "|" per Flush that had data since the last, "$" at Close.
type upper struct {
	pending, closed, aborted bool
	calls                    int
}

func (u *upper) Append(dst, data []byte) []byte {
	u.calls++
	u.pending = true
	for _, c := range data {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func (u *upper) Flush(dst []byte) []byte {
	if !u.pending {
		return dst
	}
	u.pending = false
	return append(dst, '|')
}

func (u *upper) Close(dst []byte) []byte { u.closed = true; return append(dst, '$') }
func (u *upper) Abort()                  { u.aborted = true }

// newMemPipe returns a source and destination End on a Loop without gnet.
func newMemPipe(cfg Config) (*End, *End, *memConn, *memConn) {
	l := NewLoopWithoutGnet(cfg)
	sc, dc := &memConn{}, &memConn{}
	var src, dst End
	src.Attach(l, sc)
	dst.Attach(l, dc)
	return &src, &dst, sc, dc
}

// TestPipeTransform feeds framed messages in pieces through a transformed
// pipe: what the destination gets is the head, then the transform's output
// of the message data only (no chunk framing), flushed at the end of every
// read, and closed exactly when the framing ends; bytes after the message
// stay in the source.
func TestPipeTransform(t *testing.T) {
	big := strings.Repeat("x", 3*transformChunk/2)
	tests := []struct {
		name    string
		framing Framing
		pieces  []string // fed one OnTraffic each (the first with the head)
		endMsg  bool     // the source closes: EndMessage
		want    string
		left    string // bytes of the next message, still in the source
		wantErr error
	}{
		{"length, one read", Length(5), []string{"hello"}, false, "HEAD|HELLO$", "", nil},
		{"length, three reads", Length(11), []string{"hel", "lo w", "orld"}, false, "HEAD|HEL|LO W|ORLD$", "", nil},
		{"length, next message after", Length(5), []string{"hel", "loGET /"}, false, "HEAD|HEL|LO$", "GET /", nil},
		{"chunked, split framing", Chunked(), []string{"5\r\nhe", "llo\r", "\n6\r\n wor", "ld\r\n0\r\n\r\nNEXT"}, false,
			"HEAD|HE|LLO| WOR|LD$", "NEXT", nil},
		{"chunked, trailers dropped", Chunked(), []string{"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"}, false, "HEAD|ABC$", "", nil},
		{"chunked, malformed", Chunked(), []string{"3\r\nabc\r\nzz\r\n"}, false, "HEAD|ABC", "zz\r\n",
			httpparse.ErrBadChunkLine},
		{"until close", Unlimited(), []string{"ab", "cd"}, true, "HEAD|AB|CD|$", "", nil},
		{"until close, nothing", Unlimited(), nil, true, "HEAD|$", "", nil},
		{"larger than a step", Length(int64(len(big))), []string{big}, false,
			"HEAD|" + strings.ToUpper(big) + "$", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst, sc, dc := newMemPipe(Config{HighWater: 1 << 20, LowWater: 1 << 10})
			tr := &upper{}
			var p Pipe
			var err error
			sc.in = append(sc.in, "RAWHEAD"...)
			if len(tt.pieces) > 0 {
				sc.in = append(sc.in, tt.pieces[0]...)
			}
			err = p.StartTransformed(src, dst, tt.framing, []byte("HEAD|"), len("RAWHEAD"), tr)
			for _, piece := range tt.pieces[min(1, len(tt.pieces)):] {
				if err != nil {
					break
				}
				sc.in = append(sc.in, piece...)
				err = p.OnTraffic()
			}
			if err == nil && tt.endMsg {
				err = p.EndMessage()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got := string(dc.out); got != tt.want {
				t.Errorf("destination got %q, want %q", got, tt.want)
			}
			if got := string(sc.in); got != tt.left {
				t.Errorf("source left with %q, want %q", got, tt.left)
			}
			if tt.wantErr == nil && (!tr.closed || !p.Ended() || tr.aborted) {
				t.Errorf("closed %v, ended %v, aborted %v: want closed and ended", tr.closed, p.Ended(), tr.aborted)
			}
			if want := int64(len(tt.want) - len("HEAD|")); tt.wantErr == nil && p.Moved != want {
				t.Errorf("Moved %d, want %d (the output written)", p.Moved, want)
			}
			p.Release()
			if tt.wantErr != nil && !tr.aborted {
				t.Error("a failed message's transform was not aborted by Release")
			}
		})
	}
}

// TestPipeTransformBackpressure: at HighWater the source is paused with the
// rest of its bytes unread, and Service resumes the transform where it
// stopped once the destination drained.
func TestPipeTransformBackpressure(t *testing.T) {
	src, dst, sc, dc := newMemPipe(Config{HighWater: 100, LowWater: 10})
	tr := &upper{}
	var p Pipe
	body := strings.Repeat("ab", transformChunk) // two steps
	sc.in = []byte(body)
	dc.queued = 200 // the destination is full from the first write on
	if err := p.StartTransformed(src, dst, Length(int64(len(body))), nil, 0, tr); err != nil {
		t.Fatal(err)
	}
	if !src.Paused() || !p.NeedsService() || len(sc.in) != len(body)-transformChunk {
		t.Fatalf("paused %v, needs service %v, %d bytes left; want paused after one step with %d left",
			src.Paused(), p.NeedsService(), len(sc.in), len(body)-transformChunk)
	}
	dc.queued = 0
	if err := p.Service(); err != nil {
		t.Fatal(err)
	}
	if want := strings.ToUpper(body) + "$"; string(dc.out) != want || !p.Ended() || len(sc.in) != 0 {
		t.Fatalf("after Service: %d bytes out, ended %v, %d left", len(dc.out), p.Ended(), len(sc.in))
	}
}

// TestPipeTransformNotCalledWithout: a pipe without a transform passes
// bytes through as before, framing included.
func TestPipeTransformNotCalledWithout(t *testing.T) {
	src, dst, sc, dc := newMemPipe(Config{HighWater: 1 << 20, LowWater: 1 << 10})
	const body = "3\r\nabc\r\n0\r\n\r\n"
	sc.in = []byte(body)
	var p Pipe
	if err := p.Start(src, dst, Chunked()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dc.out, []byte(body)) || !p.Ended() {
		t.Fatalf("got %q, ended %v", dc.out, p.Ended())
	}
	if err := p.EndMessage(); err != nil || len(dc.out) != len(body) {
		t.Fatal("EndMessage wrote to a pipe without a transform")
	}
}

// TestPipeTransformAllocs: a transformed message through a pipe allocates
// nothing once the output buffers are warm (the transform's own cost
// aside; upper allocates nothing either).
func TestPipeTransformAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	src, dst, sc, dc := newMemPipe(Config{HighWater: 1 << 30, LowWater: 1 << 10})
	msg := []byte("400\r\n" + strings.Repeat("a", 0x400) + "\r\n10\r\n" + strings.Repeat("b", 16) + "\r\n0\r\n\r\n")
	tr := &upper{}
	head := []byte("HEAD")
	var p Pipe
	run := func() {
		sc.in = append(sc.in[:0], "RAW"...)
		sc.in = append(sc.in, msg[:500]...)
		if err := p.StartTransformed(src, dst, Chunked(), head, 3, tr); err != nil {
			t.Fatal(err)
		}
		sc.in = append(sc.in, msg[500:]...)
		if err := p.OnTraffic(); err != nil || !p.Ended() {
			t.Fatalf("error %v, ended %v", err, p.Ended())
		}
		dc.out = dc.out[:0]
	}
	for range 3 {
		run()
	}
	if got := testing.AllocsPerRun(100, run); got != 0 {
		t.Errorf("%v allocations per transformed message, want 0", got)
	}
}

package tunnel

import "github.com/proxyto/proxyto/httpparse"

// framingKind is how a message is delimited.
type framingKind uint8

const (
	unlimited framingKind = iota // until the source ends (tunnels, bodies that run until close)
	length                       // a byte count (Content-Length)
	chunked                      // a chunked body (RFC 9112 §7.1)
	empty                        // no body
)

// Framing says which of the bytes a Pipe reads belong to the message it
// carries. The zero value is Unlimited. It does not allocate.
type Framing struct {
	kind   framingKind
	left   int64
	chunks httpparse.ChunkScanner
}

// Unlimited is the framing of a tunnel or of a body that runs until the
// source closes.
func Unlimited() Framing { return Framing{} }

// Length is the framing of a body of n bytes (Content-Length).
func Length(n int64) Framing {
	if n <= 0 {
		return Framing{kind: empty}
	}
	return Framing{kind: length, left: n}
}

// Chunked is the framing of a chunked body, last chunk and trailers included.
func Chunked() Framing { return Framing{kind: chunked} }

// Empty is the framing of a message without a body.
func Empty() Framing { return Framing{kind: empty} }

// Take returns how many leading bytes of p belong to the message, and
// whether the message ends with them. An error (a malformed chunked body,
// an httpparse sentinel) is final.
func (f *Framing) Take(p []byte) (n int, done bool, err error) {
	switch f.kind {
	case empty:
		return 0, true, nil
	case length:
		n = len(p)
		if int64(n) > f.left {
			n = int(f.left)
		}
		f.left -= int64(n)
		return n, f.left == 0, nil
	case chunked:
		return f.chunks.Scan(p)
	}
	return len(p), false, nil
}

// Done reports whether the message is complete (never, for Unlimited).
func (f *Framing) Done() bool {
	switch f.kind {
	case empty:
		return true
	case length:
		return f.left == 0
	case chunked:
		return f.chunks.Done()
	}
	return false
}

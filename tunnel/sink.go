package tunnel

import (
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/proxyto/proxyto/internal/gnetx"
	"golang.org/x/sys/unix"
)

// bufs recycles sink and source buffers between tunnels: half-closed and
// HUP-closed tunnels are rare but come in bursts.
var bufs bytebufferpool.Pool

// sink writes one direction of a tunnel to a socket gnet no longer owns: a
// duplicate of the descriptor of a connection that sent FIN, which gnet closed.
// The duplicate keeps the socket open for writing. It is non-blocking (it
// shares gnet's file description); bytes the kernel does not take are kept in
// pending and retried by flush, from Service.
type sink struct {
	fd  int
	buf *bytebufferpool.ByteBuffer // pending bytes; nil when none
}

// newSink takes over fd, a duplicate of c's descriptor, with the bytes gnet
// still held for c (which its close would drop).
func newSink(fd int, c gnet.Conn) *sink {
	s := &sink{fd: fd}
	if c.OutboundBuffered() > 0 {
		s.buf = bufs.Get()
		s.buf.B = gnetx.StealOutbound(c, s.buf.B)
	}
	return s
}

// queued is how many bytes wait for the socket.
func (s *sink) queued() int {
	if s.buf == nil {
		return 0
	}
	return len(s.buf.B)
}

// write sends p, queueing what the socket does not take now.
func (s *sink) write(p []byte) error {
	if s.queued() == 0 {
		n, err := writeFD(s.fd, p)
		if err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
	if s.buf == nil {
		s.buf = bufs.Get()
	}
	s.buf.B = append(s.buf.B, p...)
	return nil
}

// flush sends as much of the queue as the socket takes.
func (s *sink) flush() error {
	if s.queued() == 0 {
		return nil
	}
	n, err := writeFD(s.fd, s.buf.B)
	if err != nil {
		return err
	}
	rest := copy(s.buf.B, s.buf.B[n:])
	s.buf.B = s.buf.B[:rest]
	if rest == 0 {
		bufs.Put(s.buf)
		s.buf = nil
	}
	return nil
}

// close releases the descriptor; the peer sees FIN (or RST if it still sends).
func (s *sink) close() {
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
	if s.buf != nil {
		bufs.Put(s.buf)
		s.buf = nil
	}
}

// writeFD is write(2) that treats EAGAIN as "0 bytes taken".
func writeFD(fd int, p []byte) (int, error) {
	n, err := unix.Write(fd, p)
	for err == unix.EINTR {
		n, err = unix.Write(fd, p)
	}
	if err == unix.EAGAIN {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// sourceChunk is how much a source reads at a time.
const sourceChunk = 64 << 10

// source reads the rest of a socket that gnet closed while the relay had
// masked its reads (see Relay.OnClose): a duplicate descriptor, read from
// the loop as the other side drains. pending holds bytes read, or taken
// from gnet's buffer, and not yet delivered.
type source struct {
	fd      int
	pending []byte
	eof     bool
}

// read fills pending; n == 0 means the end (eof set) or an error.
func (s *source) read() (int, error) {
	buf := s.pending[:cap(s.pending)]
	if len(buf) == 0 {
		buf = make([]byte, sourceChunk)
	}
	n, err := unix.Read(s.fd, buf)
	for err == unix.EINTR {
		n, err = unix.Read(s.fd, buf)
	}
	switch {
	case err == unix.EAGAIN:
		// The peer's FIN is not there yet; try again from Service.
		s.pending = buf[:0]
		return -1, nil
	case err != nil:
		return 0, err
	case n == 0:
		s.eof = true
		return 0, nil
	}
	s.pending = buf[:n]
	return n, nil
}

func (s *source) close() {
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
	s.pending = nil
}

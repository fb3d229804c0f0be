package tunnel

import (
	"golang.org/x/sys/unix"
)

// sink writes one direction of a tunnel to a socket gnet no longer owns: a
// duplicate of the descriptor of a connection that sent FIN, which gnet closed.
// The duplicate keeps the socket open for writing. It is non-blocking (it
// shares gnet's file description); bytes the kernel does not take are kept in
// pending and retried by flush, from Service.
type sink struct {
	fd      int
	pending []byte
}

// write sends p, queueing what the socket does not take now.
func (s *sink) write(p []byte) error {
	if len(s.pending) == 0 {
		n, err := writeFD(s.fd, p)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	s.pending = append(s.pending, p...)
	return nil
}

// flush sends as much of pending as the socket takes.
func (s *sink) flush() error {
	if len(s.pending) == 0 {
		return nil
	}
	n, err := writeFD(s.fd, s.pending)
	if err != nil {
		return err
	}
	rest := copy(s.pending, s.pending[n:])
	s.pending = s.pending[:rest]
	if rest == 0 && cap(s.pending) > 64<<10 {
		s.pending = nil // give a large burst buffer back to the GC
	}
	return nil
}

// close releases the descriptor; the peer sees FIN (or RST if it still sends).
func (s *sink) close() {
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
	s.pending = nil
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

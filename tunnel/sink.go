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

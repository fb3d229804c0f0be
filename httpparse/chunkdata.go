package httpparse

// ScanData is Scan for a caller that needs the chunk data itself (to
// transform a body rather than pass it through): it consumes framing bytes
// up to the next run of chunk data and returns that run too. data is the
// tail of p[:n] (framing precedes it) and may be empty (only framing was
// consumed, or the body ended). Call it again with p[n:] until done or an
// error; errors are Scan's. It does not allocate.
func (s *ChunkScanner) ScanData(p []byte) (n int, data []byte, done bool, err error) {
	// Framing is a few bytes per chunk: feed it one byte at a time until the
	// scanner stands at data, then take the data in one step.
	for n < len(p) && s.state != csData {
		m, done, err := s.Scan(p[n : n+1])
		n += m
		if err != nil || done {
			return n, nil, done, err
		}
	}
	if n == len(p) {
		return n, nil, false, nil
	}
	k := min(uint64(len(p)-n), s.remaining)
	data = p[n : n+int(k)]
	m, done, err := s.Scan(data)
	return n + m, data, done, err
}

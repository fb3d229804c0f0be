package tunnel

import "sync"

// Transform rewrites the message a Pipe carries on its way (a response body
// gzipped for the client). The pipe hands it the message's data, without the
// source's framing (a chunked body's chunk lines are removed first), and
// writes what it appends instead; the transform delimits its own output for
// the destination. compression.Encoder is one. Used on one loop only.
type Transform interface {
	// Append takes message data and appends whatever output is ready to dst.
	Append(dst, data []byte) []byte
	// Flush appends the output for every byte given so far: the pipe calls
	// it when the source has nothing more buffered, so that a slowly
	// streamed message does not wait in the transform.
	Flush(dst []byte) []byte
	// Close appends the end of the output once the message is complete.
	// The transform is not used afterwards.
	Close(dst []byte) []byte
	// Abort gives the transform up without finishing its output (the
	// exchange failed). It is not used afterwards.
	Abort()
}

// transformChunk bounds the source bytes transformed in one step, and so
// the output buffer a step needs (compressed output is at most slightly
// larger than its input).
const transformChunk = 64 << 10

// outBufs holds the buffers a transform's output is built in before the
// write: a pipe takes one for a pump and gives it back before returning, so
// that idle pipes hold none.
var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, transformChunk+transformChunk/8); return &b }}

// StartTransformed is StartAfter for a message rewritten by t on its way:
// head (the rewritten head, possibly nil) leaves with the first output, the
// first skip bytes src has buffered are consumed, and the message's data go
// through t. The pipe owns t from here: it closes t when the framing says
// the message ended, or at EndMessage, and aborts it at Release. Moved then
// counts the bytes written to the destination (t's output).
func (p *Pipe) StartTransformed(src, dst *End, f Framing, head []byte, skip int, t Transform) error {
	return p.start(src, dst, f, head, skip, nil, 0, t)
}

// EndMessage ends a transformed message that runs until its source closes
// (Unlimited): the transform's last output is written. Call it once the
// source closed; it does nothing for a pipe without a transform.
func (p *Pipe) EndMessage() error {
	if p.t == nil {
		return nil
	}
	bp := outBufs.Get().(*[]byte)
	out := p.t.Close((*bp)[:0])
	p.t = nil
	p.state = pipeEnded
	err := p.write(nil, out)
	*bp = out[:0]
	outBufs.Put(bp)
	return err
}

// Release aborts a transform the pipe still holds (its message did not
// end). Owners call it whenever they abandon a pipe that may have had one.
func (p *Pipe) Release() {
	if p.t != nil {
		p.t.Abort()
		p.t = nil
	}
}

// takeData is Take for a transformed message: p[:n] is consumed, and data
// (within it) is the message data those bytes carry. For a chunked body
// that is the data of one chunk after its framing: call again with p[n:].
func (f *Framing) takeData(p []byte) (n int, data []byte, done bool, err error) {
	if f.kind == chunked {
		return f.chunks.ScanData(p)
	}
	n, done, err = f.Take(p)
	return n, p[:n], done, err
}

// pumpTransform is pump for a pipe with a transform: the source's message
// bytes (after skip) are decoded from their framing, transformed, and the
// output written, head first, in steps of at most transformChunk source
// bytes; between steps the destination's queue is checked against
// HighWater.
func (p *Pipe) pumpTransform(head []byte, skip int) (int, error) {
	src := p.src
	if src.c == nil || (head == nil && src.c.InboundBuffered() <= skip) {
		return 0, nil
	}
	bp := outBufs.Get().(*[]byte)
	defer outBufs.Put(bp)
	total := 0
	for {
		var in []byte
		if p.state == pipeOpen && !p.held && src.c != nil {
			data, _ := src.c.Peek(-1)
			if skip < len(data) {
				in = data[skip:]
			}
		}
		last := len(in) <= transformChunk
		in = in[:min(len(in), transformChunk)]
		out := (*bp)[:0]
		used := 0
		var ferr error
		for used < len(in) && p.state == pipeOpen {
			n, data, done, err := p.f.takeData(in[used:])
			used += n
			if len(data) > 0 {
				out = p.t.Append(out, data)
			}
			if err != nil {
				ferr = err
				break
			}
			if done {
				p.state = pipeEnded
			}
			if n == 0 {
				break
			}
		}
		switch {
		case ferr != nil:
		case p.state == pipeEnded && p.t != nil:
			out = p.t.Close(out)
			p.t = nil
		case last && p.t != nil && (used > 0 || head != nil):
			out = p.t.Flush(out)
		}
		werr := p.write(head, out)
		*bp = out[:0]
		// Discard only now: in may be a pooled copy Discard recycles.
		if src.c != nil {
			_, _ = src.c.Discard(skip + used)
		}
		if werr != nil {
			return total, ErrDestination
		}
		total += used
		if ferr != nil {
			return total, ferr
		}
		head, skip = nil, 0
		if p.state != pipeOpen {
			return total, nil
		}
		if p.dst.Queued() >= src.l.cfg.HighWater {
			p.held = true
			src.Pause()
			return total, nil
		}
		if last || used == 0 {
			return total, nil
		}
	}
}

// write sends head and out (either may be empty) in one system call and
// counts out as moved.
func (p *Pipe) write(head, out []byte) error {
	var err error
	switch {
	case len(head) > 0 && len(out) > 0:
		iov := &p.src.l.iov
		iov[0], iov[1] = head, out
		err = p.dst.Writev(iov[:])
		iov[0], iov[1] = nil, nil
	case len(head) > 0:
		err = p.dst.Write(head)
	case len(out) > 0:
		err = p.dst.Write(out)
	}
	if err != nil {
		return ErrDestination
	}
	p.Moved += int64(len(out))
	return nil
}

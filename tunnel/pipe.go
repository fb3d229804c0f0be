package tunnel

import "errors"

// ErrDestination occurs when a Pipe cannot write to its destination any
// more (the connection failed or was closed).
var ErrDestination = errors.New("proxyto: relay destination closed")

// pipeState is the life of a Pipe.
type pipeState uint8

const (
	pipeOpen      pipeState = iota // bytes flow from the source to the destination
	pipeEnded                      // the framing's message is complete; nothing more is read
	pipeFinishing                  // the source ended (relays): flush the destination, then send it FIN
	pipeClosed                     // nothing more moves this way
)

// Pipe moves bytes one way, from a source End to a destination End, within a
// Framing, with backpressure: the source is paused while the destination has
// HighWater bytes or more queued. The zero value is idle; Start it. Its
// owner calls OnTraffic when the source is readable and Service while
// NeedsService reports true. Used only on the loop of both Ends.
type Pipe struct {
	src, dst *End
	f        Framing
	state    pipeState
	held     bool // this pipe paused src: its destination was at high water
	// keep, while set, receives a copy of every message byte delivered, up
	// to keepMax bytes; past that keepLost is set and copying stops.
	keep     *[]byte
	keepMax  int
	keepLost bool
	// t, when set, rewrites the message on its way (transform.go).
	t Transform
	// Moved counts the message bytes this pipe delivered (with a
	// Transform: the bytes of its output written).
	Moved int64
}

// Start makes p carry the message framed by f from src to dst. It takes over
// a pause of src (by its owner, before the pipe existed) as its own, and
// moves what src already has buffered unless its destination is full.
func (p *Pipe) Start(src, dst *End, f Framing) error {
	return p.start(src, dst, f, nil, 0, nil, 0, nil)
}

// StartAfter is Start for a message whose head the owner rewrote: head is
// written first, together with the first message bytes, and the first skip
// bytes src has buffered (the head as it arrived) are consumed. See
// PumpAfter.
func (p *Pipe) StartAfter(src, dst *End, f Framing, head []byte, skip int) error {
	return p.start(src, dst, f, head, skip, nil, 0, nil)
}

// StartKeeping is Start that also copies the message bytes it delivers into
// *keep, up to keepMax bytes (a request body kept for a retry on another
// connection; see KeepLost).
func (p *Pipe) StartKeeping(src, dst *End, f Framing, keep *[]byte, keepMax int) error {
	return p.start(src, dst, f, nil, 0, keep, keepMax, nil)
}

func (p *Pipe) start(src, dst *End, f Framing, head []byte, skip int, keep *[]byte, keepMax int, t Transform) error {
	p.Release() // an owner that forgot its last message's transform
	*p = Pipe{src: src, dst: dst, f: f, keep: keep, keepMax: keepMax, t: t}
	if f.Done() {
		p.state = pipeEnded
	} else if src.paused {
		if dst.Queued() > src.l.cfg.LowWater {
			p.held = true
			if head == nil {
				return nil
			}
		} else {
			src.Resume()
		}
	}
	_, err := p.pump(head, skip)
	return err
}

// Retarget sends the rest of the message to dst instead (the destination
// failed before it answered, and the owner replayed what it had on a new
// one), and relays what waits.
func (p *Pipe) Retarget(dst *End) error {
	p.dst, p.keep = dst, nil
	if p.state != pipeOpen {
		return nil
	}
	if p.src.paused {
		p.held = false
		p.src.Resume()
	}
	_, err := p.pump(nil, 0)
	return err
}

// KeepLost reports whether some delivered byte is not in the keep buffer
// (there was none, or the message outgrew keepMax).
func (p *Pipe) KeepLost() bool { return p.keepLost || (p.keep == nil && p.Moved > 0) }

// Ended reports whether the framing's message is complete.
func (p *Pipe) Ended() bool { return p.state == pipeEnded }

// OnTraffic relays what the source has buffered. Call it from gnet's
// OnTraffic for the source's connection.
func (p *Pipe) OnTraffic() error {
	if p.src.paused {
		// gnet re-armed reads of a paused source (internal/gnetx,
		// assumption 4). Relay if the destination has room again;
		// otherwise leave the bytes in gnet's buffer and mask again.
		if p.state != pipeOpen || p.dst.Queued() > p.src.l.cfg.LowWater {
			p.src.repause()
			return nil
		}
		p.held = false
		p.src.Resume()
	}
	_, err := p.pump(nil, 0)
	return err
}

// PumpAfter writes head, then the message bytes that follow the first skip
// bytes the source has buffered, in one system call, and consumes both: an
// HTTP response head (rewritten in head, as the skip bytes the upstream
// sent) leaves together with the first body bytes that came with it.
func (p *Pipe) PumpAfter(head []byte, skip int) (int, error) {
	return p.pump(head, skip)
}

// pump moves the source's buffered bytes (after skip) to the destination,
// head first, and pauses the source at high water.
func (p *Pipe) pump(head []byte, skip int) (int, error) {
	src := p.src
	if src.src != nil {
		return 0, p.pumpSource()
	}
	if p.t != nil {
		return p.pumpTransform(head, skip)
	}
	if src.c == nil || (head == nil && src.c.InboundBuffered() <= skip) {
		return 0, nil
	}
	if p.state != pipeOpen || p.held {
		if head != nil {
			err := p.dst.Write(head)
			if src.c != nil {
				_, _ = src.c.Discard(skip)
			}
			if err != nil {
				return 0, ErrDestination
			}
		}
		return 0, nil
	}
	data, _ := src.c.Peek(-1)
	k, done, ferr := p.f.Take(data[skip:])
	if p.keep != nil && k > 0 {
		// Kept before the write: bytes taken from the source count as
		// sent even when the write fails (the destination closed), since
		// the source gave them up.
		if len(*p.keep)+k > p.keepMax {
			p.keep, p.keepLost = nil, true
		} else {
			*p.keep = append(*p.keep, data[skip:skip+k]...)
		}
	}
	var werr error
	switch {
	case head != nil && k > 0:
		iov := &src.l.iov
		iov[0], iov[1] = head, data[skip:skip+k]
		werr = p.dst.Writev(iov[:])
		iov[0], iov[1] = nil, nil
	case head != nil:
		werr = p.dst.Write(head)
	case k > 0:
		werr = p.dst.Write(data[skip : skip+k])
	}
	// Discard only now: data may be a pooled copy Discard recycles.
	if src.c != nil {
		_, _ = src.c.Discard(skip + k)
	}
	if werr != nil {
		return 0, ErrDestination
	}
	p.Moved += int64(k)
	if ferr != nil {
		return k, ferr
	}
	if done {
		p.state = pipeEnded
		return k, nil
	}
	if p.dst.Queued() >= src.l.cfg.HighWater {
		p.held = true
		src.Pause()
	}
	return k, nil
}

// pumpSource relays from a source (a socket gnet closed while it was
// paused) as long as the destination has room; Service calls it again as
// the destination drains. It reads straight from the duplicated descriptor.
func (p *Pipe) pumpSource() error {
	e := p.src
	for e.src != nil && p.state == pipeOpen && p.dst.Queued() < e.l.cfg.HighWater {
		sr := e.src
		if len(sr.pending) == 0 {
			n, err := sr.read()
			if n < 0 {
				return nil // nothing yet: Service tries again
			}
			if n == 0 {
				sr.close()
				e.src = nil
				if err != nil {
					return err
				}
				p.state = pipeFinishing
				return nil
			}
		}
		data := sr.pending
		sr.pending = sr.pending[:0]
		if err := p.dst.Write(data); err != nil {
			sr.close()
			e.src = nil
			return ErrDestination
		}
		p.Moved += int64(len(data))
	}
	return nil
}

// NeedsService reports whether the pipe waits for its destination to drain,
// or reads a source only Service polls.
func (p *Pipe) NeedsService() bool {
	return p.state == pipeOpen && (p.held || p.src.src != nil)
}

// Service resumes a source this pipe paused once its destination's queue
// fell to LowWater, and relays what waited. Call it every few milliseconds
// while NeedsService reports true.
func (p *Pipe) Service() error {
	if p.state != pipeOpen {
		return nil
	}
	if p.src.src != nil {
		return p.pumpSource()
	}
	if !p.held || p.dst.Queued() > p.src.l.cfg.LowWater {
		return nil
	}
	p.held = false
	p.src.Resume()
	_, err := p.pump(nil, 0)
	return err
}

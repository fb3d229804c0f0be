package tunnel

import (
	"errors"
	"io"

	"golang.org/x/sys/unix"
)

// Side names one end of a Relay.
type Side uint8

// The two ends of a relay. Direction d carries bytes read from side d to the
// other side.
const (
	Client   Side = 0
	Upstream Side = 1
)

func (s Side) other() Side { return 1 - s }

// Relay is a tunnel: two unlimited Pipes between a client End and an
// upstream End on one gnet loop, with half-close both ways and
// close-after-drain. The zero value is idle: Start it. Its owner calls
// OnTraffic and OnClose from gnet's callbacks for either connection, and
// Service every few milliseconds while NeedsService reports true; the relay
// is over once Closed reports true. Used only on that loop.
type Relay struct {
	ends [2]*End
	dir  [2]Pipe // dir[Client] carries client→upstream, dir[Upstream] upstream→client
}

// Start makes r relay between client and up, both open on one loop. A pause
// of the client (the owner masked it while the tunnel was being set up) is
// taken over. Bytes already buffered on either side are relayed at once.
func (r *Relay) Start(client, up *End) {
	r.ends = [2]*End{client, up}
	for _, s := range [2]Side{Client, Upstream} {
		if err := r.dir[s].Start(r.ends[s], r.ends[s.other()], Unlimited()); err != nil {
			r.kill(s.other())
		}
	}
}

// Moved is the number of bytes relayed from side s to the other.
func (r *Relay) Moved(s Side) int64 { return r.dir[s].Moved }

// OnTraffic relays what side s has buffered. Call it from gnet's OnTraffic
// for that side's connection.
func (r *Relay) OnTraffic(s Side) {
	e := r.ends[s]
	if e.c == nil {
		return
	}
	if r.dir[s].state != pipeOpen {
		// Nowhere to deliver: drop what arrives and stop reading.
		_, _ = e.c.Discard(-1)
		e.Pause()
		return
	}
	if err := r.dir[s].OnTraffic(); err != nil {
		r.kill(s.other())
	}
}

// OnClose records that gnet closed side s's connection with err. Call it from
// gnet's OnClose for that connection, before anything else touches it.
func (r *Relay) OnClose(s Side, err error) {
	e := r.ends[s]
	if e.c == nil {
		return
	}
	c := e.c
	eof := err != nil && errors.Is(err, io.EOF) && !e.closing && !e.dead
	if eof && e.paused && r.dir[s].state == pipeOpen {
		// gnet closes a paused connection on a bare EPOLLHUP (both halves
		// shut) without reading it (internal/gnetx, assumption 6): what
		// the peer sent before its FIN is still in gnet's buffer and in
		// the socket. Keep reading it from a duplicate, as fast as the
		// other side drains. Its write half is shut already (a FIN was
		// passed on), so no sink is needed.
		pending, _ := c.Peek(-1)
		if fd, derr := c.Dup(); derr == nil {
			e.src = &source{fd: fd, pending: append(make([]byte, 0, max(len(pending), sourceChunk)), pending...)}
			_, _ = c.Discard(-1)
			e.c, e.paused = nil, false
			if perr := r.dir[s].pumpSource(); perr != nil {
				r.kill(s.other())
			}
			r.settle()
			return
		}
	}
	if eof && r.dir[s.other()].state != pipeClosed {
		// The peer may still send: keep a write-only copy of the socket and
		// take over what gnet would drop on close (assumption 8).
		if fd, derr := c.Dup(); derr == nil {
			e.sink = newSink(fd, c)
		} else {
			e.dead = true
		}
	} else if !eof {
		e.dead = true
	}
	e.c, e.paused = nil, false
	if r.dir[s].state == pipeOpen {
		r.dir[s].state = pipeFinishing
	}
	if e.dead {
		r.dir[s.other()].state = pipeClosed
	}
	r.settle()
}

// kill marks side s as impossible to write to, and closes it.
func (r *Relay) kill(s Side) {
	e := r.ends[s]
	e.dead = true
	r.dir[s.other()].state = pipeClosed
	if e.sink != nil {
		e.sink.close()
		e.sink = nil
	}
	e.Close()
	r.settle()
}

// settle advances finishing directions and closes what is done.
func (r *Relay) settle() {
	for _, d := range [2]Side{Client, Upstream} {
		dst := r.ends[d.other()]
		if r.dir[d].state != pipeFinishing || dst.Queued() > 0 {
			continue
		}
		// Source done and destination drained: pass the FIN on.
		switch {
		case dst.sink != nil:
			dst.sink.close()
			dst.sink = nil
		case dst.c != nil && !dst.shutWR && !dst.closing:
			dst.shutWR = true
			if unix.Shutdown(dst.c.Fd(), unix.SHUT_WR) != nil {
				dst.dead = true
			}
		}
		r.dir[d].state = pipeClosed
	}
	for _, s := range [2]Side{Client, Upstream} {
		// A side is finished once nothing more is read from it and nothing
		// more will be written to it; a side not read from stays paused.
		if r.dir[s].state == pipeClosed && r.dir[s.other()].state == pipeClosed {
			r.ends[s].Close()
		}
		if r.dir[s].state != pipeOpen {
			r.ends[s].Pause()
		}
	}
}

// NeedsService reports whether the relay waits on something only Service can
// notice: a paused side, a queue to drain before a FIN, or a sink to flush.
func (r *Relay) NeedsService() bool {
	for s := range r.ends {
		e := r.ends[s]
		if e.paused || e.src != nil || (e.sink != nil && e.sink.queued() > 0) || r.dir[s].state == pipeFinishing {
			return true
		}
	}
	return false
}

// Service flushes sinks, resumes paused sides whose peers drained, and
// passes on FINs whose queues emptied. Call it periodically (every few ms)
// while NeedsService is true.
func (r *Relay) Service() {
	for _, s := range [2]Side{Client, Upstream} {
		if r.ends[s].src != nil {
			if err := r.dir[s].pumpSource(); err != nil {
				r.kill(s.other())
			}
		}
	}
	for _, s := range [2]Side{Client, Upstream} {
		if e := r.ends[s]; e.sink != nil {
			if err := e.sink.flush(); err != nil {
				r.kill(s)
			}
		}
	}
	for _, s := range [2]Side{Client, Upstream} {
		e := r.ends[s]
		if e.paused && e.c != nil && r.dir[s].state == pipeOpen && r.ends[s.other()].Queued() <= e.l.cfg.LowWater {
			r.dir[s].held = false
			e.Resume()
			if _, err := r.dir[s].pump(nil, 0); err != nil {
				r.kill(s.other())
			}
		}
	}
	r.settle()
}

// Closed reports whether the relay is over: gnet has closed both
// connections (no more callbacks come) and no sink or source is left.
func (r *Relay) Closed() bool {
	for s := range r.ends {
		e := r.ends[s]
		if e.c != nil || e.sink != nil || e.src != nil {
			return false
		}
	}
	return true
}

// Abort ends the relay now (idle or drain timeout): sinks and sources are
// closed and both connections asked to close; queued bytes may be lost.
func (r *Relay) Abort() {
	for _, s := range [2]Side{Client, Upstream} {
		e := r.ends[s]
		if e.sink != nil {
			e.sink.close()
			e.sink = nil
		}
		if e.src != nil {
			e.src.close()
			e.src = nil
		}
		r.dir[s].state = pipeClosed
		e.Close()
	}
}

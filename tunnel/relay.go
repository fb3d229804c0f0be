package tunnel

import (
	"errors"
	"io"

	"github.com/panjf2000/gnet/v2"
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

// Config bounds the bytes a relay queues per direction.
type Config struct {
	// HighWater pauses a side whose peer has this many bytes queued.
	HighWater int
	// LowWater resumes a paused side once its peer's queue fell to this.
	LowWater int
}

// dirState is the life of one direction of the relay.
type dirState uint8

const (
	dirOpen      dirState = iota // bytes flow from the source to the destination
	dirFinishing                 // the source is done: flush the destination, then send it FIN
	dirClosed                    // nothing more moves this way
)

// end is one side of the relay.
type end struct {
	c       gnet.Conn // nil once gnet has closed it (never touched after OnClose)
	sink    *sink     // write-only continuation of c after it sent FIN
	src     *source   // read-only continuation of c after gnet closed it paused
	paused  bool      // read interest masked by this relay
	dead    bool      // cannot be written any more (reset, write error)
	shutWR  bool      // FIN already sent to it
	closing bool      // Close requested; OnClose pending
}

// Relay relays bytes between a client connection and an upstream connection
// on one gnet loop. The zero value is not usable: call Start. All methods run
// on that loop.
type Relay struct {
	p    Poller
	cfg  Config
	ends [2]end
	dir  [2]dirState
	// Moved counts the bytes relayed per direction: Moved[Client] is
	// client→upstream, Moved[Upstream] upstream→client.
	Moved [2]int64
}

// Start makes r relay between client and up, both open on the loop p serves.
// clientPaused says the caller masked the client's reads (while dialing);
// the relay takes that over. Bytes already buffered on either side are
// relayed at once.
func (r *Relay) Start(p Poller, cfg Config, client, up gnet.Conn, clientPaused bool) {
	*r = Relay{p: p, cfg: cfg}
	r.ends[Client].c = client
	r.ends[Upstream].c = up
	r.ends[Client].paused = clientPaused
	for _, s := range [2]Side{Client, Upstream} {
		e := &r.ends[s]
		if e.paused && r.queued(s.other()) <= r.cfg.LowWater {
			e.paused = false
			_ = p.Resume(e.c)
		}
		r.pump(s)
	}
}

// OnTraffic relays what side s has buffered. Call it from gnet's OnTraffic
// for that side's connection.
func (r *Relay) OnTraffic(s Side) {
	e := &r.ends[s]
	if e.c == nil {
		return
	}
	if e.paused {
		// gnet re-armed read interest behind our back (it does so when it
		// buffers or drains a write). Relay if the peer has room again;
		// otherwise leave the bytes in gnet's inbound buffer and re-mask.
		if r.queued(s.other()) > r.cfg.LowWater {
			_ = r.p.Pause(e.c)
			return
		}
		e.paused = false
		_ = r.p.Resume(e.c)
	}
	r.pump(s)
}

// pump moves side s's buffered input to its peer and pauses s at high water.
func (r *Relay) pump(s Side) {
	e := &r.ends[s]
	if e.src != nil {
		r.pumpSource(s)
		return
	}
	if e.c == nil || e.c.InboundBuffered() == 0 {
		return
	}
	if r.dir[s] != dirOpen {
		// Nowhere to deliver: drop what arrives and stop reading.
		_, _ = e.c.Discard(-1)
		r.pause(s)
		return
	}
	data, _ := e.c.Peek(-1)
	n := len(data)
	err := r.deliver(s, data)
	if e.c != nil {
		_, _ = e.c.Discard(n)
	}
	if err != nil {
		r.kill(s.other())
		return
	}
	if r.queued(s.other()) >= r.cfg.HighWater {
		r.pause(s)
	}
}

// deliver writes data read from side s to its peer and counts it.
func (r *Relay) deliver(s Side, data []byte) error {
	peer := &r.ends[s.other()]
	var err error
	switch {
	case peer.sink != nil:
		err = peer.sink.write(data)
	case peer.c != nil && !peer.closing:
		_, err = peer.c.Write(data)
		if peer.c != nil && peer.paused {
			_ = r.p.Pause(peer.c) // gnet re-armed it when buffering
		}
	default:
		err = io.ErrClosedPipe
	}
	if err == nil {
		r.Moved[s] += int64(len(data))
	}
	return err
}

// pumpSource relays from a source (a socket gnet closed while it was
// paused) as long as the peer has room; Service calls it again as the peer
// drains. It reads straight from the duplicated descriptor.
func (r *Relay) pumpSource(s Side) {
	src := &r.ends[s].src
	for *src != nil && r.dir[s] == dirOpen && r.queued(s.other()) < r.cfg.HighWater {
		sr := *src
		if len(sr.pending) == 0 {
			n, err := sr.read()
			if n < 0 {
				return // nothing yet: Service tries again
			}
			if n == 0 {
				sr.close()
				*src = nil
				if err != nil {
					r.kill(s)
					return
				}
				r.dir[s] = dirFinishing
				r.settle()
				return
			}
		}
		data := sr.pending
		sr.pending = sr.pending[:0]
		if err := r.deliver(s, data); err != nil {
			sr.close()
			*src = nil
			r.kill(s.other())
			return
		}
	}
}

// queued is how many bytes wait to be written to side s.
func (r *Relay) queued(s Side) int {
	e := &r.ends[s]
	switch {
	case e.sink != nil:
		return e.sink.queued()
	case e.c != nil:
		return e.c.OutboundBuffered()
	}
	return 0
}

func (r *Relay) pause(s Side) {
	e := &r.ends[s]
	if e.c != nil && !e.paused {
		e.paused = true
		_ = r.p.Pause(e.c)
	}
}

// OnClose records that gnet closed side s's connection with err. Call it from
// gnet's OnClose for that connection, before anything else touches it.
func (r *Relay) OnClose(s Side, err error) {
	e := &r.ends[s]
	if e.c == nil {
		return
	}
	c := e.c
	eof := err != nil && errors.Is(err, io.EOF) && !e.closing && !e.dead
	if eof && e.paused && r.dir[s] == dirOpen {
		// gnet closes a paused connection on a bare EPOLLHUP (both halves
		// shut) without reading it: what the peer sent before its FIN is
		// still in gnet's buffer and in the socket. Keep reading it from a
		// duplicate, as fast as the other side drains. Its write half is
		// shut already (a FIN was passed on), so no sink is needed.
		pending, _ := c.Peek(-1)
		if fd, derr := c.Dup(); derr == nil {
			e.src = &source{fd: fd, pending: append(make([]byte, 0, max(len(pending), sourceChunk)), pending...)}
			_, _ = c.Discard(-1)
			e.c = nil
			e.paused = false
			r.pumpSource(s)
			r.settle()
			return
		}
	}
	if eof && r.dir[s.other()] != dirClosed {
		// The peer may still send: keep a write-only copy of the socket and
		// take over what gnet would drop on close.
		if fd, derr := c.Dup(); derr == nil {
			e.sink = newSink(fd, c)
		} else {
			e.dead = true
		}
	} else if !eof {
		e.dead = true
	}
	e.c = nil
	e.paused = false
	if r.dir[s] == dirOpen {
		r.dir[s] = dirFinishing
	}
	if e.dead {
		r.dir[s.other()] = dirClosed
	}
	r.settle()
}

// kill marks side s as impossible to write to, and closes it.
func (r *Relay) kill(s Side) {
	e := &r.ends[s]
	e.dead = true
	r.dir[s.other()] = dirClosed
	if e.sink != nil {
		e.sink.close()
		e.sink = nil
	}
	r.closeConn(s)
	r.settle()
}

// closeConn asks gnet to close side s's connection (OnClose follows later).
func (r *Relay) closeConn(s Side) {
	e := &r.ends[s]
	if e.c != nil && !e.closing {
		e.closing = true
		_ = e.c.Close()
	}
}

// settle advances finishing directions and closes what is done.
func (r *Relay) settle() {
	for _, d := range [2]Side{Client, Upstream} {
		dst := &r.ends[d.other()]
		if r.dir[d] != dirFinishing || r.queued(d.other()) > 0 {
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
		r.dir[d] = dirClosed
	}
	for _, s := range [2]Side{Client, Upstream} {
		// A side is finished once nothing more is read from it and nothing
		// more will be written to it; a side not read from stays paused.
		if r.dir[s] == dirClosed && r.dir[s.other()] == dirClosed {
			r.closeConn(s)
		}
		if r.dir[s] != dirOpen {
			r.pause(s)
		}
	}
}

// NeedsService reports whether the relay waits on something only Service can
// notice: a paused side, a queue to drain before a FIN, or a sink to flush.
func (r *Relay) NeedsService() bool {
	for s := range r.ends {
		e := &r.ends[s]
		if e.paused || e.src != nil || (e.sink != nil && e.sink.queued() > 0) || r.dir[s] == dirFinishing {
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
			r.pumpSource(s)
		}
	}
	for _, s := range [2]Side{Client, Upstream} {
		if e := &r.ends[s]; e.sink != nil {
			if err := e.sink.flush(); err != nil {
				r.kill(s)
			}
		}
	}
	for _, s := range [2]Side{Client, Upstream} {
		e := &r.ends[s]
		if e.paused && e.c != nil && r.dir[s] == dirOpen && r.queued(s.other()) <= r.cfg.LowWater {
			e.paused = false
			_ = r.p.Resume(e.c)
			r.pump(s)
		}
	}
	r.settle()
}

// Done reports whether both directions are finished and every connection
// and sink of the relay is closed or closing.
func (r *Relay) Done() bool {
	if r.dir[0] != dirClosed || r.dir[1] != dirClosed {
		return false
	}
	for s := range r.ends {
		e := &r.ends[s]
		if e.sink != nil || e.src != nil || (e.c != nil && !e.closing) {
			return false
		}
	}
	return true
}

// Closed reports whether the relay is over: gnet has closed both
// connections (no more callbacks come) and no sink or source is left.
func (r *Relay) Closed() bool {
	for s := range r.ends {
		e := &r.ends[s]
		if e.c != nil || e.sink != nil || e.src != nil {
			return false
		}
	}
	return true
}

// Abort ends the relay now (idle or drain timeout): sinks are closed and
// both connections asked to close; queued bytes may be lost.
func (r *Relay) Abort() {
	for _, s := range [2]Side{Client, Upstream} {
		e := &r.ends[s]
		if e.sink != nil {
			e.sink.close()
			e.sink = nil
		}
		if e.src != nil {
			e.src.close()
			e.src = nil
		}
		r.dir[s] = dirClosed
		r.closeConn(s)
	}
}

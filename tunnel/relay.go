package tunnel

import (
	"context"
	"errors"
	"io"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/proxyto/proxyto/internal/gnetx"
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

	// The splice path (splice.go): while sp is set, the sockets are the
	// splice loop's and gnet has them masked.
	sp       *splicing
	sl       *spliceLoop // sp's loop
	seen     [2]int64    // sp.moved already added to the pipes' counts
	aborting bool        // Abort was asked while spliced
	bulk     [2]int      // bytes moved per direction in the current run of large reads
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
	if client.l.cfg.SpliceAfter < 0 {
		r.startSplice()
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
	if r.sp != nil {
		if !r.sp.submitted {
			// Masking does not withdraw the events gnet already took from
			// epoll in this round: what it read goes after what is pending.
			r.takeInbound(s)
			e.repause()
			return
		}
		// The splice loop reads this socket now; gnet masked it and does
		// not re-arm it, since nothing writes through gnet meanwhile. A
		// byte gnet read anyway could only be delivered out of order.
		if e.c.InboundBuffered() > 0 {
			r.Abort()
			return
		}
		e.repause()
		return
	}
	if r.dir[s].state != pipeOpen {
		// Nowhere to deliver: drop what arrives and stop reading.
		_, _ = e.c.Discard(-1)
		e.Pause()
		return
	}
	before := r.dir[s].Moved
	if err := r.dir[s].OnTraffic(); err != nil {
		r.kill(s.other())
		return
	}
	r.noteBulk(s, int(r.dir[s].Moved-before))
}

// noteBulk counts a run of large reads in direction s and takes the splice
// path once it reached SpliceAfter.
func (r *Relay) noteBulk(s Side, n int) {
	if n < bulkRead {
		r.bulk[s] = 0
		return
	}
	r.bulk[s] += n
	if after := r.ends[s].l.cfg.SpliceAfter; after > 0 && r.bulk[s] >= after {
		r.bulk = [2]int{}
		r.startSplice()
	}
}

// startSplice moves the tunnel to its loop's splice path, if it can: both
// sides open, neither half-closed, a splice loop at hand. Bytes gnet still
// holds — queued for a side, or read from one and not delivered — go to the
// splice loop to be written first, so nothing is reordered.
func (r *Relay) startSplice() {
	c0, c1 := r.ends[Client], r.ends[Upstream]
	if r.sp != nil || c0.c == nil || c1.c == nil || c0.closing || c1.closing ||
		c0.sink != nil || c1.sink != nil || c0.src != nil || c1.src != nil ||
		r.dir[Client].state != pipeOpen || r.dir[Upstream].state != pipeOpen {
		return
	}
	sl := c0.l.spliceLoop()
	if sl == nil || c0.l.spliced >= c0.l.cfg.SplicePipes {
		// Off, or as many tunnels spliced as the loop has pipes: each holds
		// two duplicate descriptors, which the process budgets for.
		return
	}
	sp := &splicing{slot: -1}
	var err error
	if sp.fd[Client], err = c0.c.Dup(); err != nil {
		return
	}
	if sp.fd[Upstream], err = c1.c.Dup(); err != nil {
		_ = unix.Close(sp.fd[Client])
		return
	}
	r.sp, r.sl, r.seen = sp, sl, [2]int64{}
	c0.l.spliced++
	for _, s := range [2]Side{Client, Upstream} {
		if dst := r.ends[s.other()]; dst.c.OutboundBuffered() > 0 {
			p := bufs.Get()
			p.B = gnetx.StealOutbound(dst.c, p.B[:0])
			sp.dir[s].pending = p
		}
		r.takeInbound(s)
	}
	for _, e := range r.ends {
		e.paused = true
		_ = e.l.poller.Pause(e.c) // nothing queued any more: no event at all
	}
	r.dir[Client].held, r.dir[Upstream].held = false, false
	// Submit once gnet finished this round of events (its tasks run after
	// them): an event it already took from epoll for the other side may
	// still read bytes, which takeInbound queues in order.
	_ = c0.c.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		r.submitSplice(sp)
		return nil
	}))
}

// takeInbound moves what gnet read from side s and did not deliver to the
// end of direction s's pending bytes.
func (r *Relay) takeInbound(s Side) {
	src := r.ends[s]
	if src.c == nil {
		return
	}
	n := src.c.InboundBuffered()
	if n == 0 {
		return
	}
	d := &r.sp.dir[s]
	if d.pending == nil {
		d.pending = bufs.Get()
		d.pending.B = d.pending.B[:0]
	}
	data, _ := src.c.Peek(-1)
	d.pending.B = append(d.pending.B, data...)
	_, _ = src.c.Discard(-1)
	r.dir[s].Moved += int64(n)
}

// submitSplice hands sp to the splice loop, or gives the tunnel back to
// gnet if the loop is closing or the relay moved on meanwhile.
func (r *Relay) submitSplice(sp *splicing) {
	if r.sp != sp || sp.submitted {
		return
	}
	if r.aborting {
		sp.slot = -1
		sp.giveBackUnsubmitted(spliceAborted)
		return
	}
	sp.submitted = true
	r.ends[Client].l.spliceStarts++
	if err := r.sl.submit(sp); err != nil {
		sp.giveBackUnsubmitted(spliceIdle)
	}
}

// serviceSplice counts what the splice loop moved and, once it gave the
// tunnel back, takes it over again.
func (r *Relay) serviceSplice() {
	sp := r.sp
	for s := range r.seen {
		m := sp.moved[s].Load()
		r.dir[s].Moved += m - r.seen[s]
		r.seen[s] = m
	}
	if !sp.done.Load() {
		return
	}
	r.sp = nil
	r.ends[Client].l.spliced--
	res := &sp.result
	for s := range sp.fd {
		_ = unix.Close(sp.fd[s])
	}
	outcome := res.outcome
	if r.aborting || (outcome == spliceIdle && (r.ends[Client].c == nil || r.ends[Upstream].c == nil)) {
		// Aborted, or gnet closed a side meanwhile (a reset): end it.
		outcome = spliceAborted
	}
	for _, s := range [2]Side{Client, Upstream} {
		if p := res.pending[s]; p != nil {
			if outcome != spliceFailed && outcome != spliceAborted {
				if err := r.ends[s.other()].Write(p.B); err != nil {
					outcome = spliceFailed
				}
			}
			bufs.Put(p)
		}
		if res.finished[s] {
			r.dir[s].state = pipeClosed
			r.ends[s.other()].shutWR = true
		}
	}
	switch outcome {
	case spliceFailed, spliceAborted:
		r.aborting = false
		r.Abort()
		return
	case spliceIdle:
		// A direction that ended has its source at EOF: gnet reads it and
		// reports the close, and the half-close path takes over.
		for _, e := range r.ends {
			e.Resume()
		}
	}
	r.settle()
}

// OnClose records that gnet closed side s's connection with err. Call it from
// gnet's OnClose for that connection, before anything else touches it.
func (r *Relay) OnClose(s Side, err error) {
	e := r.ends[s]
	if e.c == nil {
		return
	}
	if r.sp != nil {
		// The splice loop holds a duplicate and sees the same hangup or
		// reset; what to do is decided when it gives the tunnel back.
		e.c, e.paused = nil, false
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
	if r.sp != nil {
		return true
	}
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
	if r.sp != nil {
		r.serviceSplice()
		return
	}
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
	if r.sp != nil {
		return false
	}
	for s := range r.ends {
		e := r.ends[s]
		if e.c != nil || e.sink != nil || e.src != nil {
			return false
		}
	}
	return true
}

// Abort ends the relay now (idle or drain timeout): sinks and sources are
// closed and both connections asked to close; queued bytes may be lost. A
// spliced tunnel is first taken back from its splice loop, so it ends at the
// next Service.
func (r *Relay) Abort() {
	if r.sp != nil {
		// The splice loop gives the tunnel back at once; Service ends it.
		r.aborting = true
		if r.sp.submitted {
			r.sl.stop(r.sp)
		} else {
			r.sp.giveBackUnsubmitted(spliceAborted)
		}
		return
	}
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

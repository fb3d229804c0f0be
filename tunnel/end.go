package tunnel

import (
	"io"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/proxyto/proxyto/internal/gnetx"
)

// Config bounds the bytes a Pipe lets queue on its destination, and says
// when a Relay takes the splice path.
type Config struct {
	// HighWater pauses a source whose destination has this many bytes queued.
	HighWater int
	// LowWater resumes a paused source once its destination's queue fell to this.
	LowWater int
	// SpliceAfter is how many bytes a tunnel direction moves in a run of
	// large reads (bulkRead bytes or more each) before the tunnel takes the
	// splice path; 0 keeps every tunnel on the user-space path, and a
	// negative value splices every tunnel from its start (to test and
	// measure the splice path alone).
	SpliceAfter int
	// SplicePipes bounds the pipes a loop's splice path holds (2
	// descriptors each), and the tunnels on it at once (2 duplicate
	// descriptors each). Default 64.
	SplicePipes int
	// SplicePipeSize is the capacity asked for each pipe. Default 256 KiB.
	SplicePipeSize int
	// SpliceIdle is how long a spliced tunnel must be quiet before it goes
	// back to the user-space path (holding no pipe and no duplicate
	// descriptors). Default 1s.
	SpliceIdle time.Duration
}

// bulkRead is the size of a read that counts toward SpliceAfter: a quarter
// of gnet's default read buffer, so that only a source with more queued
// than a small message counts.
const bulkRead = 16 << 10

func (c Config) withDefaults() Config {
	if c.SplicePipes <= 0 {
		c.SplicePipes = 64
	}
	if c.SplicePipeSize <= 0 {
		c.SplicePipeSize = 256 << 10
	}
	if c.SpliceIdle <= 0 {
		c.SpliceIdle = time.Second
	}
	return c
}

// Loop is what the Pipes of one gnet event loop share: the way to mask a
// connection's events on that loop, and the queue bounds. Create one per
// loop with NewLoop; it is used only on its loop.
type Loop struct {
	poller   gnetx.Poller
	cfg      Config
	iov      [2][]byte   // a head and body bytes written together; never kept
	splice   *spliceLoop // started on first use
	noSplice bool        // the splice loop could not start: stay on the user-space path
	// spliceStarts counts tunnels moved to the splice path (loop only).
	spliceStarts int64
	spliced      int // tunnels on the splice path now (at most SplicePipes)
}

// NewLoop returns the Loop of c's event loop. Call it on that loop; it fails
// when gnet's internals are not the ones internal/gnetx expects.
func NewLoop(c gnet.Conn, cfg Config) (*Loop, error) {
	p, err := gnetx.PollerOf(c)
	if err != nil {
		return nil, err
	}
	return &Loop{poller: p, cfg: cfg.withDefaults()}, nil
}

// spliceLoop returns the loop's splice loop, starting it on first use, or
// nil when the splice path is off or unavailable.
func (l *Loop) spliceLoop() *spliceLoop {
	if l.splice != nil || l.noSplice || l.cfg.SpliceAfter == 0 {
		return l.splice
	}
	sl, err := newSpliceLoop(l.cfg)
	if err != nil {
		l.noSplice = true
		return nil
	}
	l.splice = sl
	return sl
}

// Close stops the loop's splice path, if it started: tunnels still on it
// are aborted. Call it once the gnet loop stopped.
func (l *Loop) Close() {
	if l.splice != nil {
		l.splice.close()
		l.splice = nil
	}
}

// End is one connection as Pipes see it: the gnet connection while gnet has
// it, and what may outlive it in a Relay (a sink that keeps writing to a
// socket whose peer sent FIN, a source that keeps reading one gnet closed
// unread). Whether its reads are paused is known here and only here. The
// zero value is an End with no connection; Attach one. Used only on its loop.
type End struct {
	l       *Loop
	c       gnet.Conn // nil once gnet closed it: never touched after its OnClose
	sink    *sink     // write-only continuation of c after it sent FIN
	src     *source   // read-only continuation of c after gnet closed it paused
	paused  bool      // read interest masked
	dead    bool      // cannot be written any more (reset, write error)
	shutWR  bool      // FIN already sent to it
	closing bool      // Close requested; OnClose pending
}

// Attach makes e the End of c, a connection of l's loop.
func (e *End) Attach(l *Loop, c gnet.Conn) { *e = End{l: l, c: c} }

// Conn is the gnet connection, or nil once gnet closed it.
func (e *End) Conn() gnet.Conn { return e.c }

// Gone records that gnet closed the connection (call it from OnClose, for an
// End no Relay owns; a Relay's OnClose does it itself).
func (e *End) Gone() { e.c, e.paused = nil, false }

// Pause masks the connection's reads: what its peer sends stays in gnet's
// buffer and the socket.
func (e *End) Pause() {
	if e.c != nil && !e.paused {
		e.paused = true
		_ = e.l.poller.Pause(e.c)
	}
}

// Resume restores the connection's reads.
func (e *End) Resume() {
	if e.c != nil && e.paused {
		e.paused = false
		_ = e.l.poller.Resume(e.c)
	}
}

// Paused reports whether the connection's reads are masked.
func (e *End) Paused() bool { return e.paused }

// Write sends p; what the socket does not take now is queued (by gnet, or by
// the sink). It is the one write path of the package: gnet re-arms read
// interest when it queues (internal/gnetx, assumption 4), so a paused
// connection is paused again here.
func (e *End) Write(p []byte) error {
	switch {
	case e.sink != nil:
		return e.sink.write(p)
	case e.c != nil && !e.closing:
		_, err := e.c.Write(p)
		e.repause()
		return err
	}
	return io.ErrClosedPipe
}

// Writev is Write for several slices in one system call.
func (e *End) Writev(bs [][]byte) error {
	if e.sink != nil || e.c == nil || e.closing {
		for _, b := range bs {
			if err := e.Write(b); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := e.c.Writev(bs)
	e.repause()
	return err
}

func (e *End) repause() {
	if e.c != nil && e.paused {
		_ = e.l.poller.Pause(e.c)
	}
}

// Queued is how many bytes wait to be written to the connection.
func (e *End) Queued() int {
	switch {
	case e.sink != nil:
		return e.sink.queued()
	case e.c != nil:
		return e.c.OutboundBuffered()
	}
	return 0
}

// Close asks gnet to close the connection; OnClose follows later.
func (e *End) Close() {
	if e.c != nil && !e.closing {
		e.closing = true
		_ = e.c.Close()
	}
}

// NewLoopWithoutGnet returns a Loop for Pipes over connections that are not
// gnet's (benchmarks and tests of the code around them): its Pause and
// Resume do nothing but record the state.
func NewLoopWithoutGnet(cfg Config) *Loop {
	return &Loop{poller: gnetx.NoPoller(), cfg: cfg.withDefaults()}
}

package tunnel

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"
)

// The splice path. A tunnel that moves bulk data leaves gnet's hands for as
// long as it does: both sockets are masked in gnet's epoll set (gnet never
// reads or writes them meanwhile), duplicated, and given to the splice loop
// of their gnet loop, which moves each direction kernel to kernel with
// splice(2) through a pipe. A pipe is taken from a bounded pool while bytes
// are in flight and goes back when it is empty; with none left, a direction
// copies through a small user-space buffer instead. A tunnel whose both
// directions have been quiet for SpliceIdle goes back to gnet: what a pipe
// still held is handed back as bytes to write first, the duplicates are
// closed, and the sockets unmasked. docs/ARCHITECTURE.md, "The relay".

// spliceLoop is the splice worker of one gnet loop: a goroutine with its own
// epoll set, in edge-triggered mode, holding the duplicated sockets of the
// tunnels it moves. Other goroutines reach it only through submit and abort.
type spliceLoop struct {
	epfd, efd int
	cfg       Config

	mu     sync.Mutex
	inbox  []*splicing // submitted, not yet registered
	aborts []*splicing // asked to stop
	closed bool

	// Owned by the loop goroutine.
	slots    []*splicing // by slot number, as the epoll data names them
	free     []int
	pipes    []pipePair // idle pipes
	made     int        // pipes in existence
	buf      []byte     // the user-space copy buffer, when no pipe is left
	lastScan int64
}

// pipePair is one pipe: bytes are spliced into w and out of r.
type pipePair struct{ r, w int }

// splicing is one tunnel in the splice loop. fd[s] is a duplicate of side
// s's socket; dir[s] carries bytes read from side s to the other.
type splicing struct {
	fd   [2]int
	dir  [2]spliceDir
	slot int

	lastActive int64 // unix ns; loop goroutine only
	submitted  bool  // given to the splice loop (gnet loop only)
	abort      atomic.Bool
	moved      [2]atomic.Int64 // bytes read per direction (then delivered, or the tunnel fails); read by the gnet loop
	done       atomic.Bool     // result is set; the gnet loop owns the splicing again
	result     spliceResult
}

// spliceDir is one direction of a spliced tunnel.
type spliceDir struct {
	pending  *bytebufferpool.ByteBuffer // user bytes to write before anything else
	pipe     pipePair
	hasPipe  bool
	inPipe   int  // bytes in the pipe
	eof      bool // the source ended
	finished bool // the FIN was passed on (or the direction was closed before)
}

// spliceOutcome is why a tunnel left the splice loop.
type spliceOutcome uint8

const (
	spliceIdle     spliceOutcome = iota // both directions quiet: back to gnet
	spliceFinished                      // both directions ended and their FINs were passed on
	spliceFailed                        // a socket failed (reset, write error)
	spliceAborted                       // the owner asked (idle timeout, drain)
)

// spliceResult is what the gnet loop gets back.
type spliceResult struct {
	outcome spliceOutcome
	// pending[s] is what direction s still had to write (a pipe's content,
	// a partial write), to be written first by gnet.
	pending [2]*bytebufferpool.ByteBuffer
	// finished[s]: direction s ended and its FIN was passed on.
	finished [2]bool
}

// Splice flags: MOVE asks the kernel to move pages rather than copy;
// NONBLOCK makes the pipe side non-blocking (the sockets already are).
const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

var errSpliceClosed = errors.New("proxyto: splice loop closed")

// newSpliceLoop starts a splice loop.
func newSpliceLoop(cfg Config) (*spliceLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(efd)
		return nil, err
	}
	l := &spliceLoop{epfd: epfd, efd: efd, cfg: cfg}
	go l.run()
	return l, nil
}

// submit hands sp to the loop. The caller owns nothing of it until sp.done.
func (l *spliceLoop) submit(sp *splicing) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errSpliceClosed
	}
	l.inbox = append(l.inbox, sp)
	l.mu.Unlock()
	l.wake()
	return nil
}

// stop asks the loop to give sp back at once (aborted).
func (l *spliceLoop) stop(sp *splicing) {
	if sp.abort.Swap(true) {
		return
	}
	l.mu.Lock()
	l.aborts = append(l.aborts, sp)
	l.mu.Unlock()
	l.wake()
}

func (l *spliceLoop) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(l.efd, one[:])
}

// close ends the loop: tunnels still in it are given back aborted.
func (l *spliceLoop) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.wake()
}

// run is the loop goroutine.
func (l *spliceLoop) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(l.epfd, events, 250)
		if err != nil && err != unix.EINTR {
			break
		}
		for i := 0; i < n; i++ {
			ev := &events[i]
			if ev.Fd == -1 {
				var b [8]byte
				_, _ = unix.Read(l.efd, b[:])
				if !l.takeInbox() {
					l.shutdown()
					return
				}
				continue
			}
			if slot := int(ev.Fd); slot < len(l.slots) && l.slots[slot] != nil {
				l.progress(l.slots[slot])
			}
		}
		now := time.Now().UnixNano()
		if now-l.lastScan >= int64(250*time.Millisecond) {
			l.lastScan = now
			l.scanIdle(now)
		}
	}
	l.shutdown()
}

// takeInbox registers submitted tunnels and handles aborts; false once the
// loop was closed.
func (l *spliceLoop) takeInbox() bool {
	l.mu.Lock()
	in, ab, closed := l.inbox, l.aborts, l.closed
	l.inbox, l.aborts = nil, nil
	l.mu.Unlock()
	for _, sp := range in {
		l.register(sp)
	}
	for _, sp := range ab {
		if sp.slot >= 0 && sp.slot < len(l.slots) && l.slots[sp.slot] == sp {
			l.giveBack(sp, spliceAborted)
		}
	}
	return !closed
}

// register adds sp's sockets to the epoll set and moves what it can.
func (l *spliceLoop) register(sp *splicing) {
	if sp.abort.Load() {
		sp.slot = -1
		l.finish(sp, spliceAborted)
		return
	}
	if n := len(l.free); n > 0 {
		sp.slot = l.free[n-1]
		l.free = l.free[:n-1]
		l.slots[sp.slot] = sp
	} else {
		sp.slot = len(l.slots)
		l.slots = append(l.slots, sp)
	}
	sp.lastActive = time.Now().UnixNano()
	for s := range sp.fd {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(sp.slot)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, sp.fd[s], &ev); err != nil {
			l.giveBack(sp, spliceFailed)
			return
		}
	}
	l.progress(sp)
}

// progress moves both directions of sp as far as the sockets allow, and
// gives sp back when it ended or failed.
func (l *spliceLoop) progress(sp *splicing) {
	for s := range sp.dir {
		if err := l.move(sp, s); err != nil {
			l.giveBack(sp, spliceFailed)
			return
		}
	}
	if sp.dir[0].finished && sp.dir[1].finished {
		l.giveBack(sp, spliceFinished)
	}
}

// move runs direction s until its source has nothing more or its
// destination takes nothing more. The source is read only once everything
// read before it was written, so one pipe (or the pending buffer) is all a
// direction ever holds: memory stays bounded by the pipe's size.
func (l *spliceLoop) move(sp *splicing, s int) error {
	d := &sp.dir[s]
	src, dst := sp.fd[s], sp.fd[1-s]
	for !d.finished {
		switch {
		case d.pending != nil:
			n, err := unix.Write(dst, d.pending.B)
			if err == unix.EAGAIN {
				return nil
			}
			if err != nil {
				return err
			}
			if n < len(d.pending.B) {
				d.pending.B = d.pending.B[:copy(d.pending.B, d.pending.B[n:])]
				continue
			}
			bufs.Put(d.pending)
			d.pending = nil
		case d.inPipe > 0:
			n, err := unix.Splice(d.pipe.r, nil, dst, nil, d.inPipe, spliceFlags)
			if err == unix.EAGAIN {
				return nil
			}
			if err != nil {
				return err
			}
			d.inPipe -= int(n)
		case d.eof:
			l.putPipe(d)
			d.finished = true
			if err := unix.Shutdown(dst, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
				return err
			}
		case !d.hasPipe && !l.getPipe(d):
			// The pool is exhausted: one buffer through user space.
			if l.buf == nil {
				l.buf = make([]byte, sourceChunk)
			}
			n, err := unix.Read(src, l.buf)
			switch {
			case err == unix.EAGAIN:
				return nil
			case err != nil:
				return err
			case n == 0:
				d.eof = true
			default:
				sp.read(s, n)
				d.pending = bufs.Get()
				d.pending.B = append(d.pending.B[:0], l.buf[:n]...)
			}
		default:
			n, err := unix.Splice(src, nil, d.pipe.w, nil, l.cfg.SplicePipeSize, spliceFlags)
			switch {
			case err == unix.EAGAIN:
				l.putPipe(d) // nothing to read: an empty pipe goes back
				return nil
			case err != nil:
				return err
			case n == 0:
				d.eof = true
			default:
				d.inPipe = int(n)
				sp.read(s, int(n))
			}
		}
	}
	return nil
}

// read counts n bytes read from side s's socket: they are delivered next,
// or the tunnel fails.
func (sp *splicing) read(s, n int) {
	sp.moved[s].Add(int64(n))
	sp.lastActive = time.Now().UnixNano()
}

// getPipe gives d a pipe from the pool, making one while under the bound.
func (l *spliceLoop) getPipe(d *spliceDir) bool {
	if n := len(l.pipes); n > 0 {
		d.pipe, d.hasPipe = l.pipes[n-1], true
		l.pipes = l.pipes[:n-1]
		return true
	}
	if l.made >= l.cfg.SplicePipes {
		return false
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return false
	}
	// A larger pipe moves more per system call; failing to grow it only
	// costs calls.
	_, _ = unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, l.cfg.SplicePipeSize)
	l.made++
	d.pipe, d.hasPipe = pipePair{r: p[0], w: p[1]}, true
	return true
}

// putPipe returns d's pipe, which must be empty.
func (l *spliceLoop) putPipe(d *spliceDir) {
	if d.hasPipe && d.inPipe == 0 {
		l.pipes = append(l.pipes, d.pipe)
		d.hasPipe = false
	}
}

// scanIdle gives back tunnels quiet for SpliceIdle with nothing in flight.
func (l *spliceLoop) scanIdle(now int64) {
	for _, sp := range l.slots {
		if sp == nil || now-sp.lastActive < int64(l.cfg.SpliceIdle) {
			continue
		}
		quiet := true
		for s := range sp.dir {
			d := &sp.dir[s]
			quiet = quiet && d.pending == nil && d.inPipe == 0
		}
		if quiet {
			l.giveBack(sp, spliceIdle)
		}
	}
}

// giveBack removes sp from the loop and publishes the outcome.
func (l *spliceLoop) giveBack(sp *splicing, o spliceOutcome) {
	for s := range sp.fd {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, sp.fd[s], nil)
	}
	if sp.slot >= 0 && sp.slot < len(l.slots) && l.slots[sp.slot] == sp {
		l.slots[sp.slot] = nil
		l.free = append(l.free, sp.slot)
	}
	sp.slot = -1
	l.finish(sp, o)
}

// finish drains what sp's pipes hold into user buffers (the pipes stay
// with the loop) and hands sp to the gnet loop.
func (l *spliceLoop) finish(sp *splicing, o spliceOutcome) {
	for s := range sp.dir {
		d := &sp.dir[s]
		if d.inPipe > 0 && o != spliceFailed && o != spliceAborted {
			if d.pending == nil {
				d.pending = bufs.Get()
				d.pending.B = d.pending.B[:0]
			}
			for d.inPipe > 0 {
				start := len(d.pending.B)
				d.pending.B = append(d.pending.B, make([]byte, d.inPipe)...)
				n, err := unix.Read(d.pipe.r, d.pending.B[start:])
				if err != nil || n <= 0 {
					d.pending.B = d.pending.B[:start]
					break
				}
				d.pending.B = d.pending.B[:start+n]
				d.inPipe -= n
			}
		}
		if d.hasPipe {
			if d.inPipe > 0 {
				// A failed tunnel's bytes are dropped with the pipe.
				_ = unix.Close(d.pipe.r)
				_ = unix.Close(d.pipe.w)
				l.made--
				d.hasPipe, d.inPipe = false, 0
			} else {
				l.putPipe(d)
			}
		}
		sp.result.pending[s], d.pending = d.pending, nil
		sp.result.finished[s] = d.finished
	}
	sp.result.outcome = o
	sp.done.Store(true)
}

// giveBackUnsubmitted ends the splicing of a tunnel that never reached its
// loop (on the gnet loop: nothing else touches sp). Its pending bytes go
// back as they are.
func (sp *splicing) giveBackUnsubmitted(o spliceOutcome) {
	for s := range sp.dir {
		sp.result.pending[s], sp.dir[s].pending = sp.dir[s].pending, nil
	}
	sp.result.outcome = o
	sp.done.Store(true)
}

// shutdown gives every tunnel back aborted and releases the loop's
// descriptors.
func (l *spliceLoop) shutdown() {
	l.takeInbox()
	for _, sp := range l.slots {
		if sp != nil {
			l.giveBack(sp, spliceAborted)
		}
	}
	for _, p := range l.pipes {
		_ = unix.Close(p.r)
		_ = unix.Close(p.w)
	}
	l.pipes = nil
	_ = unix.Close(l.epfd)
	_ = unix.Close(l.efd)
}

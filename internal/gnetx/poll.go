package gnetx

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/buffer/elastic"
	"golang.org/x/sys/unix"
)

// Epoll masks of gnet's default level-triggered poller
// (pkg/netpoll/defs_poller_epoll.go:37-39).
const (
	readEvents  = unix.EPOLLIN | unix.EPOLLPRI
	writeEvents = unix.EPOLLOUT
)

// ErrInternals occurs when gnet's internal layout is not the one this package
// was written against (another gnet version or build tags).
var ErrInternals = errors.New("proxyto: gnet internals not as expected (need gnet v2.9.7, default build)")

// layout holds the field offsets found once by reflection.
var layout struct {
	once        sync.Once
	err         error
	connType    reflect.Type
	outboundOff uintptr // offset of conn.outboundBuffer in gnet's conn
	ctxOff      uintptr // offset of conn.ctx
}

// findLayout checks the dynamic type of c against what this file expects.
func findLayout(c gnet.Conn) error {
	layout.once.Do(func() {
		t := reflect.TypeOf(c)
		if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
			layout.err = fmt.Errorf("%w: conn is %v", ErrInternals, t)
			return
		}
		st := t.Elem()
		ob, ok := st.FieldByName("outboundBuffer")
		if !ok || ob.Type != reflect.TypeOf(elastic.Buffer{}) {
			layout.err = fmt.Errorf("%w: conn.outboundBuffer", ErrInternals)
			return
		}
		loop, ok := st.FieldByName("loop")
		if !ok || loop.Type.Kind() != reflect.Pointer {
			layout.err = fmt.Errorf("%w: conn.loop", ErrInternals)
			return
		}
		poller, ok := loop.Type.Elem().FieldByName("poller")
		if !ok || poller.Type.Kind() != reflect.Pointer {
			layout.err = fmt.Errorf("%w: eventloop.poller", ErrInternals)
			return
		}
		fd, ok := poller.Type.Elem().FieldByName("fd")
		if !ok || fd.Type.Kind() != reflect.Int {
			layout.err = fmt.Errorf("%w: poller.fd", ErrInternals)
			return
		}
		ctxf, ok := st.FieldByName("ctx")
		if !ok || ctxf.Type.Kind() != reflect.Interface || ctxf.Type.NumMethod() != 0 {
			layout.err = fmt.Errorf("%w: conn.ctx", ErrInternals)
			return
		}
		layout.connType = t
		layout.outboundOff = ob.Offset
		layout.ctxOff = ctxf.Offset
	})
	if layout.err == nil && reflect.TypeOf(c) != layout.connType {
		return fmt.Errorf("%w: conn type %T", ErrInternals, c)
	}
	return layout.err
}

// Poller masks and unmasks the events of the connections of one gnet event
// loop. Get it once per loop with PollerOf; the zero value is unusable. It is
// used only on its loop.
type Poller struct{ epfd int }

// PollerOf returns the Poller of c's event loop. Call it on c's loop; the
// result serves every connection of that loop.
func PollerOf(c gnet.Conn) (Poller, error) {
	if err := findLayout(c); err != nil {
		return Poller{}, err
	}
	v := reflect.ValueOf(c).Elem().FieldByName("loop").Elem().FieldByName("poller").Elem().FieldByName("fd")
	epfd := int(v.Int())
	if epfd <= 0 {
		return Poller{}, fmt.Errorf("%w: epoll fd %d", ErrInternals, epfd)
	}
	return Poller{epfd: epfd}, nil
}

// Pause stops gnet from reading c. Write interest stays while c has bytes
// queued, so its outbound buffer keeps draining. gnet re-arms read interest
// whenever it buffers a write or finishes draining one (assumption 4 of the
// package doc): pause again after writing to a paused connection, and expect
// a rare OnTraffic on one.
func (p Poller) Pause(c gnet.Conn) error {
	var ev uint32
	if c.OutboundBuffered() > 0 {
		ev = writeEvents
	}
	return p.ctl(c.Fd(), ev)
}

// Resume restores gnet's normal interest in c.
func (p Poller) Resume(c gnet.Conn) error {
	var ev uint32 = readEvents
	if c.OutboundBuffered() > 0 {
		ev |= writeEvents
	}
	return p.ctl(c.Fd(), ev)
}

func (p Poller) ctl(fd int, ev uint32) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: ev})
}

// StealOutbound appends to dst every byte gnet still holds for writing to c,
// and empties that buffer, so that the close gnet is about to do (one
// non-blocking attempt, then the rest is dropped) loses nothing. Call it only
// on c's loop, from OnClose or while c is open.
func StealOutbound(c gnet.Conn, dst []byte) []byte {
	if findLayout(c) != nil {
		return dst
	}
	ob := (*elastic.Buffer)(unsafe.Add(reflect.ValueOf(c).UnsafePointer(), layout.outboundOff))
	n := ob.Buffered()
	if n == 0 {
		return dst
	}
	bs, err := ob.Peek(-1)
	if err != nil {
		return dst
	}
	for _, b := range bs {
		dst = append(dst, b...)
	}
	_, _ = ob.Discard(n)
	return dst
}

// NoPoller returns a Poller that masks nothing (its epoll_ctl calls fail and
// are ignored): for code driven without a gnet loop, in tests and benchmarks.
func NoPoller() Poller { return Poller{epfd: -1} }

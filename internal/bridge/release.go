package bridge

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"
)

// This file is the one place that reaches into crypto/tls's internals.
// A tls.Conn keeps, for its whole life, the buffer it last read records into
// (rawInput: grown to a full 16 KiB record and more, about 20 KiB once a
// client sent a large body) and the one its handshake messages went through
// (hand, about 1.5 KiB); its decrypted view (input) points into rawInput.
// crypto/tls has no call that gives them back, and an idle TLS client would
// otherwise cost that much forever. So once a bridge's TLS side has been
// idle for idleRelease with all three buffers empty, they are reset to
// their zero values, under the same lock (Conn.in, a halfConn that embeds
// sync.Mutex) crypto/tls takes to use them; the next record read grows a
// fresh buffer. The fields are located by reflection once; when they are not
// what this file expects (another Go version), releasing is off and nothing
// else changes.

// tlsLayout holds the offsets found in tls.Conn.
var tlsLayout = sync.OnceValue(func() (l struct {
	ok                        bool
	in, rawInput, input, hand uintptr
}) {
	t := reflect.TypeFor[tls.Conn]()
	in, ok1 := t.FieldByName("in")
	raw, ok2 := t.FieldByName("rawInput")
	input, ok3 := t.FieldByName("input")
	hand, ok4 := t.FieldByName("hand")
	if !ok1 || !ok2 || !ok3 || !ok4 || in.Type.Kind() != reflect.Struct || in.Type.NumField() == 0 {
		return l
	}
	mu := in.Type.Field(0)
	if !mu.Anonymous || mu.Offset != 0 || mu.Type != reflect.TypeFor[sync.Mutex]() ||
		raw.Type != reflect.TypeFor[bytes.Buffer]() || input.Type != reflect.TypeFor[bytes.Reader]() ||
		hand.Type != reflect.TypeFor[bytes.Buffer]() {
		return l
	}
	l.ok, l.in, l.rawInput, l.input, l.hand = true, in.Offset, raw.Offset, input.Offset, hand.Offset
	return l
})

// releases counts buffers given back, for tests.
var releases atomic.Int64

// Releases returns how many times an idle bridge gave tls.Conn's read
// buffers back. Safe for concurrent use.
func Releases() int64 { return releases.Load() }

// CanRelease reports whether this Go's crypto/tls has the layout release
// needs: when false, idle TLS connections keep their read buffers.
func CanRelease() bool { return tlsLayout().ok }

// release empties tc's read-side buffers if nothing is pending in them. It
// must not run while another goroutine reads tc (the bridge calls it from
// its reading goroutine, between reads).
func release(tc *tls.Conn) {
	l := tlsLayout()
	if !l.ok {
		return
	}
	p := unsafe.Pointer(tc)
	mu := (*sync.Mutex)(unsafe.Add(p, l.in))
	raw := (*bytes.Buffer)(unsafe.Add(p, l.rawInput))
	input := (*bytes.Reader)(unsafe.Add(p, l.input))
	hand := (*bytes.Buffer)(unsafe.Add(p, l.hand))
	mu.Lock()
	defer mu.Unlock()
	if raw.Len() != 0 || input.Len() != 0 || hand.Len() != 0 {
		return // part of a record, or of a message, is still to come
	}
	if raw.Cap() == 0 && hand.Cap() == 0 {
		return
	}
	*raw, *hand = bytes.Buffer{}, bytes.Buffer{}
	input.Reset(nil)
	releases.Add(1)
}

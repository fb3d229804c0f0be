package observability

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// asyncWriter is the log sink: Write copies the line into memory and returns,
// and a goroutine writes the lines out, every interval or sooner when 64 KiB
// are waiting. Event loops write access lines, and a slow stdout (a full pipe,
// a stalled collector) must never stall a loop: past max bytes waiting, lines
// are dropped and counted instead.
type asyncWriter struct {
	out      io.Writer
	max      int
	interval time.Duration

	mu    sync.Mutex
	buf   []byte
	spare []byte

	flushMu sync.Mutex // one writer of out at a time
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	dropped atomic.Int64
}

// asyncKick is how many waiting bytes wake the writer before its interval.
const asyncKick = 64 << 10

func newAsyncWriter(out io.Writer, interval time.Duration, max int) *asyncWriter {
	w := &asyncWriter{out: out, max: max, interval: interval,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Write queues p. It never blocks on the output and never fails.
func (w *asyncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if len(w.buf)+len(p) > w.max {
		w.mu.Unlock()
		w.dropped.Add(1)
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	kick := len(w.buf) >= asyncKick
	w.mu.Unlock()
	if kick {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Sync writes out everything queued so far.
func (w *asyncWriter) Sync() error {
	w.flush()
	return nil
}

// Stop writes out what is queued and ends the writer goroutine. Writes after
// it are still queued but written only by a later Sync.
func (w *asyncWriter) Stop() error {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
	})
	w.flush()
	return nil
}

func (w *asyncWriter) run() {
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			w.flush()
			return
		case <-w.kick:
		case <-t.C:
		}
		w.flush()
	}
}

func (w *asyncWriter) flush() {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	b := w.buf
	w.buf, w.spare = w.spare[:0], nil
	w.mu.Unlock()
	if len(b) > 0 {
		_, _ = w.out.Write(b)
	}
	if cap(b) > 4*asyncKick {
		b = nil // let a burst's buffer go
	}
	w.mu.Lock()
	w.spare = b[:0]
	w.mu.Unlock()
}

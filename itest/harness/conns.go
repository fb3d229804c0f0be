package harness

import (
	"net"
	"sync"
)

// connSet is the bookkeeping every test server here shares: its listener,
// the connections it holds (accepted, or dialed on a client's behalf) and the
// goroutines serving them, so that close ends them all and waits. The zero
// value is ready to use.
type connSet struct {
	mu     sync.Mutex
	open   map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// track adds c. It returns false once the set is closed; the caller then
// closes c itself.
func (s *connSet) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.open == nil {
		s.open = map[net.Conn]struct{}{}
	}
	s.open[c] = struct{}{}
	return true
}

// untrack removes c.
func (s *connSet) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
}

// serve accepts on ln until it is closed, running handle for each connection
// on its own goroutine; the connection is closed and untracked when handle
// returns.
func (s *connSet) serve(ln net.Listener, handle func(net.Conn)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// dropAll closes every tracked connection; the listener stays open.
func (s *connSet) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.open {
		c.Close()
	}
}

// close closes ln and every tracked connection, then waits for the serving
// goroutines. It reports false when the set was closed already.
func (s *connSet) close(ln net.Listener) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	ln.Close()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return true
}

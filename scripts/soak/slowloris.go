package main

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// slowPace is how often a slowloris connection sends the next byte of its
// head: a few bytes per --client-header-timeout, so no head ever completes.
const slowPace = 400 * time.Millisecond

// slowloris keeps n connections open that send a request head one byte per
// slowPace, reconnecting each one proxyto drops, until stop is closed. Each
// connection proxyto drops is an expected outcome timed from its dial; one
// proxyto keeps past --client-header-timeout plus slack is a hang.
func slowloris(s *servers, to timeouts, n int, t *tally, stop <-chan struct{}) {
	head := "GET " + s.originURL("/slowloris") + " HTTP/1.1\r\nHost: " + s.origin.Addr + "\r\n" + s.headerLines(upHTTP, noFault)
	for len(head) < 4096 {
		head += "X-Slow: and steady\r\n"
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the first dials over a second, not one burst.
			time.Sleep(time.Duration(i) * time.Second / time.Duration(n))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if res, done := slowOne(s.proxy.Addr, head, to, stop); !done {
					t.addPhase(res)
				}
			}
		}()
	}
	wg.Wait()
}

// slowOne runs one slowloris connection until proxyto drops it (an
// expected result), it outlives the deadline (a hang), or stop (done: no
// result).
func slowOne(addr, head string, to timeouts, stop <-chan struct{}) (res result, done bool) {
	res.phase = "slowloris (time to drop)"
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, to.clientWait())
	if err != nil {
		res.out, res.reason, res.detail = outUnexpected, "dial: "+errWord(err), err.Error()
		return res, false
	}
	c := conn.(*net.TCPConn)
	defer c.Close()
	limit := to.clientWait()
	buf := make([]byte, 512)
	for i := 0; ; i++ {
		select {
		case <-stop:
			c.SetLinger(0)
			return res, true
		default:
		}
		res.dur = time.Since(start)
		if res.dur > limit {
			res.out, res.reason = outHang, "connection kept past --client-header-timeout plus slack"
			res.detail = "sent " + itoa(i) + " bytes of a head"
			return res, false
		}
		c.SetWriteDeadline(time.Now().Add(limit))
		if _, err := c.Write([]byte{head[i%len(head)]}); err != nil {
			if isHang(err) {
				res.out, res.reason, res.detail = outHang, "write: no progress within the deadline", err.Error()
				return res, false
			}
			res.out = outExpected // proxyto closed it
			return res, false
		}
		c.SetReadDeadline(time.Now().Add(slowPace))
		k, err := c.Read(buf)
		switch {
		case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
			continue // still open: next byte
		case k > 0:
			// An answer to half a head is not wanted, but a 4xx is
			// acceptable (the rest is read by the next iterations).
			if k < 10 || string(buf[:5]) != "HTTP/" || buf[9] != '4' {
				res.out, res.reason, res.detail = outUnexpected, "answered a half head", string(buf[:k])
				return res, false
			}
			res.out = outExpected
			return res, false
		default:
			res.out = outExpected // EOF or reset: dropped
			return res, false
		}
	}
}

// probe runs clean small exchanges (a 1000-byte GET or a 1 KiB tunnel echo,
// through the http upstream) on n clients until stop, each under phase.
func probe(s *servers, to timeouts, n int, t *tally, phase string, seed uint64, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				x := &exchange{s: s, to: to, rng: rng, id: nextID.Add(1), fixed: 1000}
				x.res = result{phase: phase, up: upHTTP}
				k := kGet
				if rng.IntN(2) == 0 {
					k, x.fixed = kTunnelEcho, 1024
				}
				t.addPhase(x.run(k))
			}
		}()
	}
	wg.Wait()
}

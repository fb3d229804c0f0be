package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// probe sends rate plain-HTTP requests per second through proxyto, each on
// a new connection, and records how long each took from connect to the last
// byte of the response: what a new client sees while the load is on. With
// no upstream it sends them straight to the proxy it is given (the test's
// upstream): the same path without proxyto, to tell proxyto's latency from
// a busy machine's.
type probe struct {
	proxy, upstream, origin string
	dialer                  *net.Dialer
	stop                    chan struct{}
	wg                      sync.WaitGroup
	inflight                atomic.Int64

	mu    sync.Mutex
	shots []shot
}

// shot is one probe request: when it started, how long it took, and its
// error kind ("" for success).
type shot struct {
	at      time.Time
	took    time.Duration
	errKind string
	err     error
}

// probeResult summarises the shots of a time window.
type probeResult struct {
	ran           bool
	n             int // successes
	p50, p99, max time.Duration
	errs          map[string]int
	errorCount    int
	example       string
	rate          float64 // shots per second
}

// probeTimeout bounds one probe request; a slower one counts as an error.
const probeTimeout = 10 * time.Second

func startProbe(proxy, upstream, origin string, rate int) *probe {
	p := &probe{
		proxy: proxy, upstream: upstream, origin: origin,
		dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, probePhase, roleSource, 1)}, Timeout: probeTimeout, Control: noPortBind},
		stop:   make(chan struct{}),
	}
	if rate <= 0 {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case now := <-t.C:
				// A stalled proxyto must not pile up goroutines here.
				if p.inflight.Load() >= int64(rate)*int64(probeTimeout/time.Second) {
					p.record(shot{at: now, errKind: "skipped: too many in flight"})
					continue
				}
			}
			p.inflight.Add(1)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer p.inflight.Add(-1)
				p.record(p.one())
			}()
		}
	}()
	return p
}

func (p *probe) record(s shot) {
	p.mu.Lock()
	p.shots = append(p.shots, s)
	p.mu.Unlock()
}

func (p *probe) one() shot {
	s := shot{at: time.Now()}
	fail := func(kind string, err error) shot {
		s.errKind, s.err = kind, err
		return s
	}
	nc, err := p.dialer.Dial("tcp4", p.proxy)
	if err != nil {
		return fail("dial: "+errKind(err), err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(s.at.Add(probeTimeout))
	req := fmt.Appendf(nil, "GET http://%s/fast HTTP/1.1\r\nHost: %s\r\n", p.origin, p.origin)
	if p.upstream != "" {
		req = fmt.Appendf(req, "X-Proxy-To: %s\r\n", p.upstream)
	}
	req = append(req, "Connection: close\r\n\r\n"...)
	if _, err := nc.Write(req); err != nil {
		return fail("write: "+errKind(err), err)
	}
	buf := make([]byte, 1024)
	head, rest, err := readHead(nc, buf)
	if err != nil {
		return fail("response: "+errKind(err), err)
	}
	if st := statusCode(head); st != 200 {
		return fail(fmt.Sprintf("response: status %d", st), fmt.Errorf("%q", firstLine(head)))
	}
	want := []byte("fast\n")
	body := make([]byte, len(want))
	n := copy(body, rest)
	if _, err := io.ReadFull(nc, body[n:]); err != nil || !bytes.Equal(body, want) || contentLength(head) != len(want) {
		return fail("response: body", fmt.Errorf("%q, %v", body, err))
	}
	s.took = time.Since(s.at)
	return s
}

// finish stops the probe and waits for its requests.
func (p *probe) finish() {
	close(p.stop)
	p.wg.Wait()
}

// window summarises the shots started in [from, to); zero times are open.
func (p *probe) window(from, to time.Time) probeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := probeResult{ran: true, errs: map[string]int{}}
	var lat []time.Duration
	var first, last time.Time
	for _, s := range p.shots {
		if (!from.IsZero() && s.at.Before(from)) || (!to.IsZero() && !s.at.Before(to)) {
			continue
		}
		if first.IsZero() || s.at.Before(first) {
			first = s.at
		}
		if s.at.After(last) {
			last = s.at
		}
		if s.errKind != "" {
			r.errs[s.errKind]++
			r.errorCount++
			if r.example == "" {
				r.example = fmt.Sprintf("%s: %v", s.errKind, s.err)
			}
			continue
		}
		lat = append(lat, s.took)
	}
	r.n = len(lat)
	if d := last.Sub(first).Seconds(); d > 0 {
		r.rate = float64(r.n+r.errorCount-1) / d
	}
	if len(lat) == 0 {
		return r
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	r.p50, r.p99, r.max = at(0.50), at(0.99), lat[len(lat)-1]
	return r
}

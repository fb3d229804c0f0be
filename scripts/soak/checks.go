package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// sample is proxyto's resource use at one moment.
type sample struct {
	fds        int            // entries of /proc/PID/fd
	sockets    int            // of those, sockets
	pipes      int            // pipes (see pipeAllowance)
	links      map[string]int // what they point at ("socket:[123]", "anon_inode:[eventfd]", …), counted
	goroutines int            // go_goroutines
	idle       int            // of those, idle pool workers (see idleWorkers)
	clients    int            // proxyto_client_connections
	tunnels    int            // proxyto_tunnels_active
	rss        int64          // VmRSS
	heap       float64        // go_memstats_heap_alloc_bytes (live heap when taken after a GC)
}

// other is the descriptors that are neither sockets nor pipes.
func (s sample) other() int { return s.fds - s.sockets - s.pipes }

func (s sample) String() string {
	return fmt.Sprintf("fds %d (%d sockets, %d pipes), goroutines %d (%d idle pool workers), client connections %d, tunnels %d, RSS %s, live heap %s",
		s.fds, s.sockets, s.pipes, s.goroutines, s.idle, s.clients, s.tunnels, mib(s.rss), mib(int64(s.heap)))
}

// busy is the goroutine count the leak check compares: without the idle
// pool workers, which stay a while after a burst and exit by themselves.
func (s sample) busy() int { return s.goroutines - s.idle }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

var admin = &http.Client{Timeout: 10 * time.Second}

// scrape returns proxyto's unlabelled metrics.
func scrape(p *harness.Proxyto) (map[string]float64, error) {
	resp, err := admin.Get("http://" + p.AdminAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// collectGarbage makes proxyto run a GC (the heap profile does, with gc=1),
// so the next sample's heap is the live heap.
func collectGarbage(p *harness.Proxyto) error {
	resp, err := admin.Get("http://" + p.AdminAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// idleWorkerFrames are the functions idle pool workers wait in: proxyto's
// dial workers (engine/dial.go; a worker exits after 30 s without a job)
// and gnet's ants workers (purged when idle for a second or more).
var idleWorkerFrames = []string{
	"github.com/proxyto/proxyto/engine.(*dialPool).work+",
	"github.com/panjf2000/ants/v2.(*goWorker).run.func1+",
}

// idleWorkers counts the goroutines blocked in one of idleWorkerFrames,
// from a grouped goroutine dump: "N @ pcs" starts a group, and its first
// "#" line is the frame it blocks in.
func idleWorkers(dump string) int {
	n, group, first := 0, 0, false
	for _, l := range strings.Split(dump, "\n") {
		if c, _, ok := strings.Cut(l, " @ "); ok {
			group, _ = strconv.Atoi(c)
			first = true
			continue
		}
		if first && strings.HasPrefix(l, "#") {
			for _, f := range idleWorkerFrames {
				if strings.Contains(l, f) {
					n += group
				}
			}
			first = false
		}
	}
	return n
}

// goroutineDump returns proxyto's goroutines, grouped, for a leak report.
func goroutineDump(p *harness.Proxyto) string {
	resp, err := admin.Get("http://" + p.AdminAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b)
}

func takeSample(p *harness.Proxyto) (sample, error) {
	var s sample
	m, err := scrape(p)
	if err != nil {
		return s, err
	}
	s.goroutines = int(m["go_goroutines"])
	s.clients = int(m["proxyto_client_connections"])
	s.tunnels = int(m["proxyto_tunnels_active"])
	s.heap = m["go_memstats_heap_alloc_bytes"]
	s.idle = idleWorkers(goroutineDump(p))
	if s.links, err = fdLinks(p.PID); err != nil {
		return s, err
	}
	for l, n := range s.links {
		s.fds += n
		switch {
		case strings.HasPrefix(l, "socket:"):
			s.sockets += n
		case strings.HasPrefix(l, "pipe:"):
			s.pipes += n
		}
	}
	s.rss, err = p.RSS()
	return s, err
}

// fdLinks returns what the descriptors of process pid point at, counted.
func fdLinks(pid int) (map[string]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	links := map[string]int{}
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil { // else closed meanwhile
			links[l]++
		}
	}
	return links, nil
}

// newDescriptors describes what now holds and base did not: TCP sockets by
// their two ends (named after the soak's servers), other sockets and files
// by kind. For a leak report.
func newDescriptors(base, now sample, names map[string]string) []string {
	tcp := tcpSockets()
	var out []string
	for l, n := range now.links {
		extra := n - base.links[l]
		if extra <= 0 || strings.HasPrefix(l, "pipe:") {
			continue
		}
		inode := strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")
		if t, ok := tcp[inode]; ok {
			out = append(out, fmt.Sprintf("tcp %s (%s) → %s (%s) %s", t.local, names[t.local], t.remote, names[t.remote], t.state))
			continue
		}
		out = append(out, fmt.Sprintf("%s ×%d", l, extra))
	}
	sort.Strings(out)
	return out
}

type tcpSocket struct{ local, remote, state string }

// tcpStates names the states of /proc/net/tcp.
var tcpStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
	"06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}

// tcpSockets reads the IPv4 TCP sockets of /proc/net/tcp by inode.
func tcpSockets() map[string]tcpSocket {
	m := map[string]tcpSocket{}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		m[f[9]] = tcpSocket{hexAddr(f[1]), hexAddr(f[2]), tcpStates[f[3]]}
	}
	return m
}

// hexAddr turns "0100007F:1F90" into "127.0.0.1:8080".
func hexAddr(s string) string {
	ip, port, ok := strings.Cut(s, ":")
	a, err1 := strconv.ParseUint(ip, 16, 32)
	p, err2 := strconv.ParseUint(port, 16, 16)
	if !ok || err1 != nil || err2 != nil {
		return s
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", a&0xff, a>>8&0xff, a>>16&0xff, a>>24, p)
}

// Leak allowances over the baseline, after the load has ended and proxyto
// had time to close what it should.
const (
	// Sockets: none. Client connections are gone, tunnels are gone, and
	// pooled upstream connections expire after --pool-idle-timeout, which
	// settle waits out, so every socket opened under load must be closed
	// again.
	socketAllowance = 0
	// Goroutines, idle dial workers not counted: proxyto runs no goroutine
	// per connection (gnet event loops); an https upstream connection has
	// two (its TLS bridge), and they must be gone with the connection. A
	// few for the admin server's own connections.
	goroutineAllowance = 4
	// Live heap after a GC: what a run may leave behind legitimately (the
	// resolver cache, per-loop maps grown to their high-water mark,
	// metrics); a leak of even 100 bytes per exchange exceeds it within a
	// 20-second run.
	heapAllowance = 16 << 20
)

// Allowances that scale with proxyto's event loops, one per CPU by default.
var (
	// pipeAllowance: a loop that relays with splice(2) keeps a pool of idle
	// pipes for reuse (up to 64 pipes, 128 descriptors).
	pipeAllowance = 128 * runtime.NumCPU()
	// otherAllowance: descriptors neither sockets nor pipes (epoll,
	// eventfd, timerfd) that a loop's helpers may create on first use,
	// once, after the baseline was taken.
	otherAllowance = 4 * runtime.NumCPU()
)

// settle waits up to limit for proxyto to return to base: no client
// connection or tunnel, and nothing above the baseline (see above). With
// base nil it waits for the gauges only, to take the baseline. It returns
// the last sample and what stayed above.
func settle(p *harness.Proxyto, base *sample, limit time.Duration) (sample, []string) {
	deadline := time.Now().Add(limit)
	for {
		var left []string
		_ = collectGarbage(p)
		s, err := takeSample(p)
		switch {
		case err != nil:
			left = append(left, "sampling proxyto: "+err.Error())
		default:
			if s.clients != 0 {
				left = append(left, fmt.Sprintf("proxyto_client_connections %d, want 0", s.clients))
			}
			if s.tunnels != 0 {
				left = append(left, fmt.Sprintf("proxyto_tunnels_active %d, want 0", s.tunnels))
			}
			if base != nil {
				left = append(left, s.above(*base)...)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return s, left
		}
		if verbose {
			fmt.Printf("soak: settling: %s\n", strings.Join(left, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// above lists what s holds beyond base plus the allowances.
func (s sample) above(base sample) []string {
	var left []string
	if s.sockets > base.sockets+socketAllowance {
		left = append(left, fmt.Sprintf("sockets %d, baseline %d (+%d allowed)", s.sockets, base.sockets, socketAllowance))
	}
	if s.other() > base.other()+otherAllowance {
		left = append(left, fmt.Sprintf("descriptors neither sockets nor pipes %d, baseline %d (+%d allowed)", s.other(), base.other(), otherAllowance))
	}
	if s.pipes > base.pipes+pipeAllowance {
		left = append(left, fmt.Sprintf("pipes %d, baseline %d (+%d allowed)", s.pipes, base.pipes, pipeAllowance))
	}
	if s.busy() > base.busy()+goroutineAllowance {
		left = append(left, fmt.Sprintf("goroutines %d (idle pool workers not counted), baseline %d (+%d allowed)", s.busy(), base.busy(), goroutineAllowance))
	}
	if s.heap > base.heap+heapAllowance {
		left = append(left, fmt.Sprintf("live heap %s, baseline %s (+%s allowed)", mib(int64(s.heap)), mib(int64(base.heap)), mib(heapAllowance)))
	}
	return left
}

// rssWatch samples proxyto's RSS while the load runs and keeps the peak.
type rssWatch struct {
	mu   sync.Mutex
	peak int64
	stop chan struct{}
	done chan struct{}
}

func watchRSS(p *harness.Proxyto) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if n, err := p.RSS(); err == nil {
				w.mu.Lock()
				w.peak = max(w.peak, n)
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Peak returns the highest RSS seen so far.
func (w *rssWatch) Peak() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

func (w *rssWatch) Stop() {
	close(w.stop)
	<-w.done
}

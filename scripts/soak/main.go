// Command soak is proxyto's own fault-injection soak test. It starts the
// real proxyto binary (PROXYTO_BIN, or built from ./cmd/proxyto), an origin,
// an echo origin and three upstream proxies (http, https, SOCKS5) from
// itest/harness that inject the fault each client asks for, then:
//
//  1. runs a mixed population of clients for -duration: tunnels (echo,
//     half-closed, early data with an early FIN), GETs up to 8 MiB,
//     uploads, pipelines, aborted uploads and downloads, partial heads and
//     garbage, about -fault-rate of them with an upstream fault; every
//     exchange is judged against its fault and every byte verified;
//  2. measures the latency of small clean exchanges, then measures it
//     again while thousands of slowloris connections drip their heads;
//  3. waits for proxyto to settle and checks that descriptors, goroutines,
//     gauges and the live heap are back at their baseline and that RSS
//     stayed bounded.
//
// It prints one table (by kind, by fault, by upstream, other phases) and
// exits 1 on any unexpected outcome, hang or leak, naming it. See
// docs/soak.md.
//
//	go run ./scripts/soak -duration 10m
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// config is the command line.
type config struct {
	duration     time.Duration
	clients      int
	faultRate    float64
	slowConns    int
	slowFor      time.Duration
	probeClients int
	probeFor     time.Duration
	seed         uint64
	logSample    string
	rssGrowthMax int64
	// kinds are the kinds the mixed population runs (all when empty).
	kinds []kind
}

// verbose is -v.
var verbose bool

func main() { os.Exit(run()) }

func run() int {
	var cfg config
	var rssMiB int64
	flag.DurationVar(&cfg.duration, "duration", 20*time.Second, "how long the mixed client population runs")
	flag.IntVar(&cfg.clients, "clients", 200, "concurrent clients in the mixed population")
	flag.Float64Var(&cfg.faultRate, "fault-rate", 0.2, "share of exchanges with an upstream fault")
	flag.IntVar(&cfg.slowConns, "slowloris", 2000, "slowloris connections in the slowloris phase")
	flag.DurationVar(&cfg.slowFor, "slowloris-for", 0, "how long the slowloris phase runs (0: a quarter of -duration, 8s to 60s)")
	flag.IntVar(&cfg.probeClients, "probes", 50, "normal clients measuring latency before and during the slowloris phase")
	flag.DurationVar(&cfg.probeFor, "probe-for", 4*time.Second, "how long latency is measured before the slowloris phase")
	flag.Uint64Var(&cfg.seed, "seed", 0, "random seed (0: from the clock); each client's draws follow from it")
	flag.StringVar(&cfg.logSample, "access-log-sample", "", "proxyto's --access-log-sample; its output is kept in memory, so the default is 1 up to -duration 2m (every problem shows its access line) and 0.05 above")
	flag.Int64Var(&rssMiB, "rss-growth-max", 256, "largest RSS growth over the baseline allowed at the peak of the load, in MiB")
	kindList := flag.String("kinds", "", "comma-separated kinds the mixed population runs, to chase one problem (default: all)")
	flag.BoolVar(&verbose, "v", false, "print what proxyto has yet to release while it settles")
	flag.Parse()
	cfg.rssGrowthMax = rssMiB << 20
	if *kindList != "" {
		for _, name := range strings.Split(*kindList, ",") {
			k, ok := kindNamed(strings.TrimSpace(name))
			if !ok {
				fmt.Fprintf(os.Stderr, "soak: no kind %q\n", name)
				return 2
			}
			cfg.kinds = append(cfg.kinds, k)
		}
	}
	if cfg.seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano())
	}
	if cfg.logSample == "" {
		cfg.logSample = "1"
		if cfg.duration > 2*time.Minute {
			cfg.logSample = "0.05"
		}
	}
	if cfg.slowFor == 0 {
		cfg.slowFor = min(max(cfg.duration/4, 8*time.Second), time.Minute)
	}
	to := defaultTimeouts

	t := &harness.ProgramTB{Name: "soak"}
	t.Cleanup(harness.RemoveBuild)
	defer t.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		t.Logf("interrupted")
		t.Exit(130)
	}()

	began := time.Now()
	fmt.Printf("soak: seed %d; %d clients for %v, fault rate %.0f%%; then %d slowloris connections for %v beside %d probes\n",
		cfg.seed, cfg.clients, cfg.duration, cfg.faultRate*100, cfg.slowConns, cfg.slowFor, cfg.probeClients)
	s := startServers(t, to, cfg.logSample)
	fmt.Printf("soak: proxyto pid %d on %s (admin %s), started in %v; proxyto flags %s\n",
		s.proxy.PID, s.proxy.Addr, s.proxy.AdminAddr, time.Since(began).Round(time.Millisecond), strings.Join(to.flags(), " "))
	tl := newTally()

	// Warm-up: one clean exchange of every kind through every upstream, so
	// that what proxyto creates once (resolver entries, per-loop maps) is
	// in the baseline; then the pool's idle connections expire.
	warmUp(s, to, tl, cfg.seed)
	time.Sleep(to.poolIdle + time.Second)
	base, left := settle(s.proxy, nil, to.tunnelIdle+to.slack)
	if len(left) > 0 {
		printNotes(s)
		fmt.Printf("soak: FAIL proxyto did not settle after the warm-up: %s\n", strings.Join(left, "; "))
		return 1
	}
	fmt.Printf("soak: baseline after warm-up: %v\n", base)

	rss := watchRSS(s.proxy)
	mixedStart := time.Now()
	stuck := mixed(s, to, cfg, tl)
	mixedTook := time.Since(mixedStart)
	after, _ := takeSample(s.proxy)
	fmt.Printf("soak: mixed phase took %v; right after it: %v\n", mixedTook.Round(time.Millisecond), after)

	stop := make(chan struct{})
	go func() { time.Sleep(cfg.probeFor); close(stop) }()
	probe(s, to, cfg.probeClients, tl, "probe before slowloris", cfg.seed, stop)

	stop = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); slowloris(s, to, cfg.slowConns, tl, stop) }()
	go func() {
		defer wg.Done()
		probe(s, to, cfg.probeClients, tl, "probe during slowloris", cfg.seed+1, stop)
	}()
	var slowPeak int
	wg.Add(1)
	go func() { // how many connections proxyto held at once
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
				if sm, err := takeSample(s.proxy); err == nil {
					slowPeak = max(slowPeak, sm.clients)
				}
			}
		}
	}()
	time.Sleep(cfg.slowFor)
	close(stop)
	wg.Wait()
	peak := rss.Peak()
	rss.Stop()

	settleStart := time.Now()
	final, left := settle(s.proxy, &base, to.tunnelIdle+to.poolIdle+to.slack)
	fmt.Printf("soak: peak client connections during slowloris %d; settled in %v: %v; RSS peak %s\n\n",
		slowPeak, time.Since(settleStart).Round(time.Millisecond), final, mib(peak))

	tl.print(os.Stdout, func(client, target string) []string { return accessLines(s, client, target) })
	stale, early, stall := tl.defects()
	fmt.Printf("\nknown defect signatures:\n"+
		"  stale pooled connection (a request with a body answered 502 connection_terminated through an http/https upstream, its own fault wanting otherwise): %d\n"+
		"  CONNECT with early data and FIN closed without an answer: %d\n"+
		"  request body stalled on its way to the upstream (the upstream got part of it, proxyto all of it; 504 after --response-header-timeout): %d\n",
		stale, early, stall)

	var fails []string
	unexpected, hangs := tl.counts()
	if unexpected > 0 {
		fails = append(fails, fmt.Sprintf("LOSS: %d unexpected outcomes (listed above)", unexpected))
	}
	if hangs > 0 {
		fails = append(fails, fmt.Sprintf("HANG: %d operations made no progress within proxyto's timeout plus %v (listed above)", hangs, to.slack))
	}
	fails = append(fails, stuck...)
	for _, l := range left {
		fails = append(fails, "LEAK: "+l)
	}
	if len(left) > 0 {
		if nd := newDescriptors(base, final, s.names()); len(nd) > 0 {
			fmt.Printf("\nproxyto's descriptors that were not there at the baseline (pipes left out):\n  %s\n", strings.Join(nd, "\n  "))
		}
		d := goroutineDump(s.proxy)
		if len(d) > 16<<10 {
			d = d[:16<<10] + "…"
		}
		fmt.Printf("\nproxyto's goroutines:\n%s\n", d)
	}
	if g := peak - base.rss; g > cfg.rssGrowthMax {
		fails = append(fails, fmt.Sprintf("RSS: grew by %s at the peak (%s → %s), more than %s", mib(g), mib(base.rss), mib(peak), mib(cfg.rssGrowthMax)))
	}
	select {
	case <-s.proxy.Done():
		fails = append(fails, "CRASH: proxyto exited during the soak")
	default:
	}
	fmt.Printf("\nsoak: %v end to end\n", time.Since(began).Round(time.Millisecond))
	if len(fails) > 0 {
		printNotes(s)
		for _, f := range fails {
			fmt.Printf("soak: FAIL %s\n", f)
		}
		return 1
	}
	fmt.Printf("soak: PASS\n")
	return 0
}

// accessLines returns proxyto's access lines for client and target (the
// last 2: a client address may come back on a later connection).
func accessLines(s *servers, client, target string) []string {
	var out []string
	for _, l := range strings.Split(s.proxy.Output(), "\n") {
		if strings.Contains(l, `"msg":"access"`) && strings.Contains(l, `"client":"`+client+`"`) &&
			(target == "" || strings.Contains(l, `"target":"`+target+`"`)) {
			out = append(out, l)
		}
	}
	return out[max(0, len(out)-2):]
}

// printNotes prints proxyto's log lines other than access lines (warnings,
// errors, panics), the last 20 of them.
func printNotes(s *servers) {
	var notes []string
	for _, l := range strings.Split(s.proxy.Output(), "\n") {
		if l != "" && !strings.Contains(l, `"msg":"access"`) {
			notes = append(notes, l)
		}
	}
	if len(notes) == 0 {
		return
	}
	fmt.Printf("\nproxyto's log, access lines left out (%d lines, the last 20):\n", len(notes))
	for _, l := range notes[max(0, len(notes)-20):] {
		fmt.Printf("  %s\n", oneLine(l))
	}
}

// warmUp runs one clean exchange of every kind through every upstream.
func warmUp(s *servers, to timeouts, tl *tally, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1<<32))
	for k := range numKinds {
		for u := range numUpstreams {
			// 1 MiB GETs and tunnels, so what proxyto creates on first
			// use for large transfers is in the baseline too.
			x := &exchange{s: s, to: to, rng: rng, id: nextID.Add(1), fixed: 1 << 20}
			x.res = result{phase: "warm-up", up: u}
			tl.addPhase(x.run(k))
		}
	}
}

// inflight is what a client is doing, for the watchdog's report.
type inflight struct {
	kind  kind
	up    upstream
	fault fault
	start time.Time
}

// mixed runs the mixed population until cfg.duration has passed and every
// client finished its last exchange. Clients still running long after (each
// operation has a deadline, so this is a bug in a deadline or in the soak)
// are returned as failures.
func mixed(s *servers, to timeouts, cfg config, tl *tally) (stuck []string) {
	end := time.Now().Add(cfg.duration)
	weights := make([]int, numKinds)
	for k := range numKinds {
		if len(cfg.kinds) == 0 || slices.Contains(cfg.kinds, k) {
			weights[k] = kinds[k].weight
		}
	}
	current := make([]atomic.Pointer[inflight], cfg.clients)
	var wg sync.WaitGroup
	for i := range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.seed, uint64(i)))
			// Start over a second, not as one burst of connections and
			// TLS handshakes.
			time.Sleep(time.Duration(i) * time.Second / time.Duration(cfg.clients))
			for time.Now().Before(end) {
				x := &exchange{s: s, to: to, rng: rng, id: nextID.Add(1)}
				k := kind(x.pick(weights))
				x.res = result{up: upstream(rng.IntN(int(numUpstreams)))}
				if fs := kinds[k].faults; len(fs) > 0 && rng.Float64() < cfg.faultRate {
					for x.res.fault == noFault {
						if f := fs[rng.IntN(len(fs))]; f.applies(x.res.up) {
							x.res.fault = f
						}
					}
				}
				current[i].Store(&inflight{k, x.res.up, x.res.fault, time.Now()})
				res := x.run(k)
				current[i].Store(nil)
				tl.add(res)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	grace := 3*to.bodyIdle() + time.Minute
	select {
	case <-done:
		return nil
	case <-time.After(cfg.duration + grace):
	}
	for i := range current {
		if f := current[i].Load(); f != nil {
			stuck = append(stuck, fmt.Sprintf("HANG: client %d still in %s via %s, fault %s, after %v", i, f.kind, f.up, f.fault, time.Since(f.start).Round(time.Second)))
		}
	}
	return stuck
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// config is the coordinator's command line.
type config struct {
	options
	Bin          string
	Hold         time.Duration
	ProbeRate    int
	AccessLog    bool
	ProxytoFlags []string
	PlanOnly     bool
}

// runner drives one run: the children, the phases, the results.
type runner struct {
	cfg  config
	plan plan

	origins, upstreams, loadgens []*proc
	proxytos                     []*proc
	proxyAddr                    string
	// Bound listener addresses by phase (and "probe"), in shard order.
	upAddrs, originAddrs map[string][]string

	baseline sample
	results  []phaseResult
}

// timeoutStep bounds one connection step (connect, answer, echo) in the
// load generators: generous, since a loaded 2-CPU machine is slow, and an
// expired one is counted as an error, never waited out silently.
const timeoutStep = 30 * time.Second

// openTime is how long opening every connection takes at the configured
// rate.
func (r *runner) openTime() time.Duration {
	return time.Duration(float64(r.plan.N) / r.cfg.Rate * float64(time.Second))
}

// start launches origins, upstreams, proxyto and load generators, each
// group in parallel.
func (r *runner) start(ctx context.Context) error {
	r.upAddrs, r.originAddrs = map[string][]string{}, map[string][]string{}
	originSpecs := make([]serverSpec, r.plan.Origin)
	upSpecs := make([]serverSpec, r.plan.Upstream)
	maxHold := r.openTime()*2 + r.cfg.Hold + 5*time.Minute
	for _, ph := range r.plan.Phases {
		kind := "echo"
		if ph.Kind == "http" {
			kind = "http"
		}
		for i, ips := range ph.Origin {
			for _, ip := range ips {
				originSpecs[i].Listen = append(originSpecs[i].Listen, listenSpec{Label: ph.Name, IP: ip, Kind: kind})
			}
		}
		for i, ips := range ph.Up {
			for _, ip := range ips {
				upSpecs[i].Listen = append(upSpecs[i].Listen, listenSpec{Label: ph.Name, IP: ip, Kind: "proxy"})
			}
		}
	}
	originSpecs[0].Listen = append(originSpecs[0].Listen, listenSpec{Label: "probe", IP: fmt.Sprintf("127.%d.%d.1", probePhase, roleOrigin), Kind: "http"})
	upSpecs[0].Listen = append(upSpecs[0].Listen, listenSpec{Label: "probe", IP: fmt.Sprintf("127.%d.%d.1", probePhase, roleUpstream), Kind: "proxy"})
	for i := range originSpecs {
		originSpecs[i].MaxHold = maxHold
	}

	var err error
	if r.origins, err = startServers(ctx, groupOrigin, originSpecs, r.originAddrs); err != nil {
		return err
	}
	if r.upstreams, err = startServers(ctx, groupUpstream, upSpecs, r.upAddrs); err != nil {
		return err
	}
	if r.proxytos, err = r.startProxytos(ctx, 0); err != nil {
		return err
	}
	r.proxyAddr = r.proxytos[0].listen
	r.loadgens = make([]*proc, r.plan.Loadgen)
	return parallel(len(r.loadgens), func(i int) error {
		p, _, err := startRole(ctx, groupLoadgen, i, struct{}{})
		r.loadgens[i] = p
		return err
	})
}

// startServers starts one origin or upstream process per spec and collects
// their listener addresses by label, in shard order.
func startServers(ctx context.Context, group string, specs []serverSpec, addrs map[string][]string) ([]*proc, error) {
	ps := make([]*proc, len(specs))
	readies := make([]reply, len(specs))
	err := parallel(len(specs), func(i int) error {
		p, ready, err := startRole(ctx, group, i, specs[i])
		ps[i], readies[i] = p, ready
		return err
	})
	if err != nil {
		return ps, err
	}
	for _, ready := range readies {
		for label, as := range ready.Addrs {
			addrs[label] = append(addrs[label], as...)
		}
	}
	return ps, nil
}

// startProxytos starts the plan's proxyto processes on one port: the first
// on port 0, the others joining the port it got. maxConns > 0 sets
// --max-conns on each.
func (r *runner) startProxytos(ctx context.Context, maxConns int) ([]*proc, error) {
	open := r.openTime()
	args := []string{
		// The hold must not be cut short by the idle timeout, nor the
		// in-flight requests by the response-header timeout.
		"--tunnel-idle-timeout", (max(5*time.Minute, 2*open+r.cfg.Hold+2*time.Minute)).Round(time.Second).String(),
		"--response-header-timeout", (max(30*time.Second, 2*open+r.cfg.Hold+time.Minute)).Round(time.Second).String(),
	}
	if !r.cfg.AccessLog {
		args = append(args, "--no-access-log")
	}
	if r.plan.Proxyto > 1 {
		args = append(args, "--reuse-port")
	}
	if maxConns > 0 {
		args = append(args, "--max-conns", fmt.Sprint(maxConns))
	}
	args = append(args, r.cfg.ProxytoFlags...)
	first, err := startProxyto(ctx, r.cfg.Bin, 0, "127.0.0.1:0", args)
	if err != nil {
		return nil, err
	}
	ps := make([]*proc, r.plan.Proxyto)
	ps[0] = first
	err = parallel(len(ps)-1, func(i int) error {
		p, err := startProxyto(ctx, r.cfg.Bin, i+1, first.listen, args)
		ps[i+1] = p
		return err
	})
	if err != nil {
		return nil, err
	}
	return ps, nil
}

// parallel runs f(0..n-1) at once and returns the first error.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// callAll sends each load generator its request (made by mk) at once and
// sums the replies.
func (r *runner) callAll(ctx context.Context, ps []*proc, mk func(i int) request, timeout time.Duration) (reply, error) {
	rs := make([]reply, len(ps))
	err := parallel(len(ps), func(i int) error {
		var err error
		rs[i], err = ps[i].call(ctx, mk(i), timeout)
		return err
	})
	return sumReplies(rs), err
}

// loadgenRequest is load generator i's part of a phase: every L-th
// connection from i on, from its own source addresses.
func (r *runner) loadgenRequest(op string, ph phasePlan, i int) request {
	L := r.plan.Loadgen
	return request{
		Op: op, Kind: ph.Kind, Proxy: r.proxyAddr,
		Srcs: ph.Src[i], Upstreams: r.upAddrs[ph.Name], Origins: r.originAddrs[ph.Name],
		First: i, Step: L, Count: ceilDiv(r.plan.N-i, L),
		Rate: r.cfg.Rate / float64(L), Timeout: timeoutStep,
	}
}

// serverStats sums "stats" over origin or upstream processes.
func serverStats(ctx context.Context, ps []*proc) (open, held int, err error) {
	rs := make([]reply, len(ps))
	err = parallel(len(ps), func(i int) error {
		var err error
		rs[i], err = ps[i].call(ctx, request{Op: "stats"}, 10*time.Second)
		return err
	})
	for _, x := range rs {
		open += x.Open
		held += x.Held
	}
	return open, held, err
}

// waitFor polls cond every 250 ms until it holds, ctx ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still not the case after %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// drained waits until proxyto, the upstreams and the origins hold no
// connection of the phase any more.
func (r *runner) drained(ctx context.Context) error {
	var last string
	err := waitFor(ctx, time.Minute+r.openTime(), func() (bool, error) {
		for _, p := range r.proxytos {
			if !p.alive() {
				return false, fmt.Errorf("%s (pid %d) exited", p.name, p.pid)
			}
		}
		s := takeSample(r.proxytos)
		up, _, err := serverStats(ctx, r.upstreams)
		if err != nil {
			return false, err
		}
		or, _, err := serverStats(ctx, r.origins)
		if err != nil {
			return false, err
		}
		var conns float64
		for _, c := range s.conns {
			conns += c
		}
		last = fmt.Sprintf("proxyto %.0f client connections, upstreams %d, origins %d", conns, up, or)
		return conns == 0 && up == 0 && or == 0, nil
	})
	if err != nil {
		return fmt.Errorf("connections left after closing: %s: %w", last, err)
	}
	return nil
}

// phase runs one phase: open, sample at the peak, hold, verify, close,
// drain, with the probe on throughout (except in the limit phase, where
// the probe's connections would be refused like the others).
func (r *runner) phase(ctx context.Context, ph phasePlan) (res phaseResult, err error) {
	res = phaseResult{name: ph.Name, n: r.plan.N}
	if ph.Name == phaseLimit {
		res.maxConns = ceilDiv(r.plan.N, 2*r.plan.Proxyto)
		if err := r.restartProxytos(ctx, res.maxConns); err != nil {
			return res, err
		}
	}
	res.start = takeSample(r.proxytos)
	res.idleRSS, res.idleHeap = r.baseline.rss[groupProxyto], r.baseline.heap
	if ph.Name == phaseLimit {
		res.idleRSS, res.idleHeap = res.start.rss[groupProxyto], res.start.heap // fresh processes
	}
	var pr, direct *probe
	if ph.Name != phaseLimit {
		pr = startProbe(r.proxyAddr, r.upAddrs["probe"][0], r.originAddrs["probe"][0], r.cfg.ProbeRate)
		direct = startProbe(r.upAddrs["probe"][0], "", r.originAddrs["probe"][0], r.cfg.ProbeRate)
	}
	// The probe's time windows: opening, holding (everything open,
	// nothing moving), verifying and closing.
	var steadyFrom, steadyTo time.Time
	stopProbes := func() {
		if pr == nil {
			return
		}
		pr.finish()
		direct.finish()
		for i, p := range []*probe{pr, direct} {
			w := &res.probes[i]
			w[0] = p.window(time.Time{}, time.Time{})
			if !steadyTo.IsZero() {
				w[1], w[2], w[3] = p.window(time.Time{}, steadyFrom), p.window(steadyFrom, steadyTo), p.window(steadyTo, time.Time{})
			}
		}
		pr = nil
	}
	defer stopProbes()
	// Opening at the asked rate takes openTime; a saturated machine may
	// manage a quarter of it. Beyond that, something is stuck.
	callTimeout := 4*r.openTime() + 5*time.Minute
	step := func(op string) (reply, error) {
		return r.callAll(ctx, r.loadgens, func(i int) request { return r.loadgenRequest(op, ph, i) }, callTimeout)
	}

	fmt.Fprintf(os.Stderr, "phase %s: opening %d at %.0f/s\n", ph.Name, r.plan.N, r.cfg.Rate)
	t0 := time.Now()
	if res.open, err = step("open"); err != nil {
		return res, err
	}
	res.openSecs = time.Since(t0).Seconds()
	if ph.Kind == "http" {
		// Every request that was sent must reach an origin, where it is
		// held: then all of them are open at once, through proxyto.
		err := waitFor(ctx, time.Minute, func() (bool, error) {
			_, held, err := serverStats(ctx, r.origins)
			res.atOrigin = held
			return held >= res.open.OK, err
		})
		if err != nil {
			res.failures = append(res.failures, fmt.Sprintf("only %d of %d requests reached the origins: %v", res.atOrigin, res.open.OK, err))
		}
	}
	res.peak = takeSample(r.proxytos)
	// Hold everything open for a while: the probe's latency then is what a
	// new client sees while proxyto carries N idle tunnels or N requests
	// waiting for their answers.
	fmt.Fprintf(os.Stderr, "phase %s: holding %d for %v\n", ph.Name, res.open.OK, r.cfg.Hold)
	steadyFrom = time.Now()
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(r.cfg.Hold):
	}
	steadyTo = time.Now()
	if ph.Kind == "http" {
		if err := r.originsDo(ctx, "release"); err != nil {
			return res, err
		}
	}
	fmt.Fprintf(os.Stderr, "phase %s: verifying\n", ph.Name)
	if res.verify, err = step("verify"); err != nil {
		return res, err
	}
	if res.closed, err = step("close"); err != nil {
		return res, err
	}
	if ph.Kind == "http" {
		if err := r.originsDo(ctx, "rearm"); err != nil {
			return res, err
		}
	}
	stopProbes()
	if err := r.drained(ctx); err != nil {
		res.failures = append(res.failures, err.Error())
	}
	res.end = takeSample(r.proxytos)
	res.failures = append(res.failures, r.check(res)...)
	return res, nil
}

// restartProxytos replaces the running proxyto processes by new ones with
// --max-conns.
func (r *runner) restartProxytos(ctx context.Context, maxConns int) error {
	for _, p := range r.proxytos {
		if !p.alive() {
			return fmt.Errorf("%s (pid %d) died during the run%s", p.name, p.pid, p.out.report())
		}
	}
	_ = parallel(len(r.proxytos), func(i int) error { r.proxytos[i].stop(15 * time.Second); return nil })
	ps, err := r.startProxytos(ctx, maxConns)
	if err != nil {
		return err
	}
	r.proxytos, r.proxyAddr = ps, ps[0].listen
	return nil
}

func (r *runner) originsDo(ctx context.Context, op string) error {
	// A release wakes every held request of an origin at once: on a
	// saturated machine its answer to the coordinator waits behind them
	// (seen at N=100,000: more than 10 s), so allow a second per thousand.
	timeout := max(10*time.Second, time.Duration(r.cfg.N/1000)*time.Second)
	_, err := r.callAll(ctx, r.origins, func(int) request { return request{Op: op} }, timeout)
	return err
}

// check lists what a phase got wrong.
func (r *runner) check(res phaseResult) []string {
	var f []string
	n := res.n
	if e := errorCount(res.open) + errorCount(res.verify) + errorCount(res.closed); e > 0 {
		ex := sumReplies([]reply{res.open, res.verify, res.closed}).Example
		f = append(f, fmt.Sprintf("%d errors, e.g. %s", e, ex))
	}
	if res.maxConns == 0 {
		if res.open.OK != n {
			f = append(f, fmt.Sprintf("opened %d of %d", res.open.OK, n))
		}
	} else {
		budget := res.maxConns * len(r.proxytos)
		switch {
		case res.open.OK+res.open.Refused != n:
			f = append(f, fmt.Sprintf("opened %d and refused %d with 429: %d of %d unaccounted for", res.open.OK, res.open.Refused, n-res.open.OK-res.open.Refused, n))
		case res.open.Refused == 0 && n > budget:
			f = append(f, fmt.Sprintf("--max-conns %d on %d processes refused nothing of %d", res.maxConns, len(r.proxytos), n))
		case res.open.OK > budget:
			f = append(f, fmt.Sprintf("opened %d, above the budget of %d", res.open.OK, budget))
		}
		for i, c := range res.peak.conns {
			if c > float64(res.maxConns) {
				f = append(f, fmt.Sprintf("proxyto-%d held %.0f client connections, above --max-conns %d", i, c, res.maxConns))
			}
		}
		if got := res.peak.limited - res.start.limited; int(got) != res.open.Refused {
			f = append(f, fmt.Sprintf("proxyto counted %.0f limit rejections, the clients saw %d", got, res.open.Refused))
		}
	}
	if res.verify.OK != res.open.OK {
		f = append(f, fmt.Sprintf("verified %d of %d opened", res.verify.OK, res.open.OK))
	}
	// A probe that timed out is proxyto's failure only when the control
	// (the same requests straight to the test's upstream) did not time out
	// as often: otherwise the machine, shared with the load side, was the
	// limit (a saturated 2-CPU box opening 100,000 connections is).
	if p, c := res.probes[0][0], res.probes[1][0]; p.errorCount > 2*c.errorCount {
		f = append(f, fmt.Sprintf("probe: %d errors (control: %d), e.g. %s", p.errorCount, c.errorCount, p.example))
	}
	for _, p := range r.proxytos {
		if !p.alive() {
			f = append(f, fmt.Sprintf("%s (pid %d) died%s", p.name, p.pid, p.out.report()))
		}
	}
	return f
}

// stopAll stops the children in the order that leaves nothing to drain:
// load generators first (they hold the client ends), then proxyto, the
// upstreams and the origins.
func (r *runner) stopAll() {
	for _, group := range [][]*proc{r.loadgens, r.proxytos, r.upstreams, r.origins} {
		_ = parallel(len(group), func(i int) error {
			if group[i] != nil {
				group[i].stop(10 * time.Second)
			}
			return nil
		})
	}
	killAll()
}

// run is the coordinator: plan, tune, start, run the phases, report.
func run(ctx context.Context, cfg config, sys *sysctls) error {
	m := readMachine(fdsProxyto*cfg.N + fdReserve)
	p := makePlan(cfg.options, m)
	p.print(os.Stdout, m, cfg.options)
	needs := sysctlNeeds(p, len(cfg.Phases))
	if cfg.PlanOnly {
		for _, nd := range needs {
			cur := readProc(nd.path())
			if cur == "" {
				continue
			}
			if want := nd.want(cur); want != "" {
				fmt.Printf("  sysctl %s: %s -> %s (%s)\n", nd.name, strings.Join(strings.Fields(cur), " "), want, nd.why)
			}
		}
		return nil
	}
	if len(p.Problems) > 0 {
		return errors.New("the machine's limits do not allow this run; see NEEDED above")
	}
	if unmet := sys.raise(needs, m.Root, os.Stdout); len(unmet) > 0 {
		fmt.Println("kernel settings this run would want (not root, or not writable; running anyway):")
		for _, u := range unmet {
			fmt.Println("  " + u)
		}
	}

	r := &runner{cfg: cfg, plan: p}
	defer r.stopAll()
	if err := r.start(ctx); err != nil {
		return err
	}
	// Idle baseline: after a few requests, so lazily built state exists.
	warm := startProbe(r.proxyAddr, r.upAddrs["probe"][0], r.originAddrs["probe"][0], 50)
	time.Sleep(400 * time.Millisecond)
	warm.finish()
	if w := warm.window(time.Time{}, time.Time{}); w.errorCount > 0 {
		return fmt.Errorf("warm-up requests through proxyto failed: %s", w.example)
	}
	time.Sleep(time.Second)
	r.baseline = takeSample(r.proxytos)

	var failures []string
	for _, ph := range p.Phases {
		res, err := r.phase(ctx, ph)
		if err != nil {
			if len(r.results) > 0 {
				printTable(os.Stdout, p, r.baseline, r.results) // the phases that completed
			}
			return fmt.Errorf("phase %s: %w", ph.Name, err)
		}
		r.results = append(r.results, res)
		for _, f := range res.failures {
			failures = append(failures, ph.Name+": "+f)
		}
	}
	printTable(os.Stdout, p, r.baseline, r.results)
	if len(failures) > 0 {
		return errors.New("FAIL\n  " + strings.Join(failures, "\n  "))
	}
	fmt.Println("\nPASS")
	return nil
}

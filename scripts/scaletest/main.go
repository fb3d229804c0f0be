// Command scaletest measures proxyto at scale on one machine, with nothing
// from outside this repository. It starts an origin and an upstream proxy
// of its own, sharded over processes as the per-process descriptor limit
// demands; proxyto processes sharing one port with --reuse-port (one when
// the limit allows); and load generators using several 127.0.0.0/8 source
// addresses, so that no 4-tuple space runs out. Then, phase by phase:
//
//   - hold: N CONNECT tunnels to an echo origin, opened at a bounded rate
//     and each proven by an echo, held, proven again, closed;
//   - in-flight: N plain-HTTP requests to an origin that holds every one
//     until all N are open at once, then answers; every response checked;
//   - limit: N tunnels against proxyto with --max-conns at N/2: the excess
//     must be refused with 429 and closed, the rest must work.
//
// During the first two, a probe sends 100 requests/s through proxyto on new
// connections and records their latency. As root it raises the kernel
// settings the run needs and restores them at exit (also on error and
// Ctrl-C); otherwise it says what it would want and runs anyway. It prints
// the plan, then one table, and exits non-zero if anything failed.
//
//	go build -o bin/proxyto ./cmd/proxyto && go run ./scripts/scaletest -n 2000
//	make scale-test N=100000
//
//	coordinator ─► loadgen ×L ─► proxyto ×P (one port) ─► upstream ×U ─► origin ×O
//	     └─ probe: 100 req/s ─────────┘
//
// The same binary runs every role: the coordinator starts itself with -role
// and talks to it in JSON lines on stdin and stdout; a child exits when its
// stdin closes, and the kernel kills it if the coordinator dies. With
// SCALETEST_CPUPROFILE=DIR each child writes a CPU profile there, to see
// where the load side spends its CPU.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		cfg          config
		role, spec   string
		phases       string
		proxytoFlags string
	)
	flag.IntVar(&cfg.N, "n", 2000, "tunnels held, and requests in flight, at once")
	flag.StringVar(&cfg.Bin, "proxyto", "bin/proxyto", "the proxyto binary to test")
	flag.Float64Var(&cfg.Rate, "rate", 2000, "connections opened per second, all load generators together (checked at 2×, closed at 4×)")
	flag.DurationVar(&cfg.Hold, "hold", 10*time.Second, "how long the hold phase keeps its tunnels open")
	flag.IntVar(&cfg.ProbeRate, "probe-rate", 100, "probe requests per second during the hold and in-flight phases")
	flag.IntVar(&cfg.ProxytoProcs, "procs", 0, "proxyto processes; 0 means as few as the descriptor limit allows")
	flag.StringVar(&phases, "phases", strings.Join([]string{phaseHold, phaseInflight, phaseLimit}, ","), "phases to run, in order")
	flag.BoolVar(&cfg.AccessLog, "access-log", false, "keep proxyto's access log on (it is switched off by default)")
	flag.StringVar(&proxytoFlags, "proxyto-flags", "", "more flags for proxyto, space-separated")
	flag.BoolVar(&cfg.PlanOnly, "plan", false, "print the plan and the kernel settings it wants, and exit")
	flag.StringVar(&role, "role", "", "internal: run as a child process of this role")
	flag.StringVar(&spec, "spec", "", "internal: the child's spec, JSON")
	flag.Parse()

	if role != "" {
		runRole(role, spec)
		return
	}
	cfg.ProxytoFlags = strings.Fields(proxytoFlags)
	for _, ph := range strings.Split(phases, ",") {
		switch ph = strings.TrimSpace(ph); ph {
		case phaseHold, phaseInflight, phaseLimit:
			cfg.Phases = append(cfg.Phases, ph)
		case "":
		default:
			fmt.Fprintf(os.Stderr, "scaletest: unknown phase %q (want %s, %s, %s)\n", ph, phaseHold, phaseInflight, phaseLimit)
			os.Exit(2)
		}
	}
	if cfg.N < 1 || cfg.Rate <= 0 || len(cfg.Phases) == 0 {
		fmt.Fprintln(os.Stderr, "scaletest: -n and -rate must be positive, and -phases not empty")
		os.Exit(2)
	}
	os.Exit(coordinate(cfg))
}

// coordinate runs the coordinator with every exit path covered: on return,
// error, first signal (SIGINT, SIGTERM, SIGHUP: the run stops, children are
// stopped in order) and second signal (children killed at once). Sysctls are
// restored on each.
func coordinate(cfg config) int {
	if _, err := os.Stat(cfg.Bin); err != nil && !cfg.PlanOnly {
		fmt.Fprintf(os.Stderr, "scaletest: %v (build it: make build, or pass -proxyto)\n", err)
		return 2
	}
	sys := &sysctls{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nscaletest: %v: stopping (again to kill at once)\n", s)
		cancel()
		<-sig
		killAll()
		_ = sys.restore(os.Stderr)
		os.Exit(130)
	}()

	err := run(ctx, cfg, sys)
	killAll()
	if rerr := sys.restore(os.Stdout); rerr != nil {
		fmt.Fprintln(os.Stderr, "scaletest:", rerr)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "scaletest: interrupted")
		return 130
	case err != nil:
		fmt.Fprintln(os.Stderr, "scaletest:", err)
		return 1
	}
	return 0
}

// runRole is a child: it starts its role, writes a ready line with its
// addresses, then answers one JSON line per request line until stdin
// closes.
func runRole(role, spec string) {
	log.SetPrefix("scaletest " + role + ": ")
	log.SetFlags(0)
	// The coordinator stops children by closing stdin; a terminal's
	// signals are not for them.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP)
	out := json.NewEncoder(os.Stdout)
	var handle func(request) reply
	switch role {
	case groupOrigin, groupUpstream:
		s := &server{}
		if err := json.Unmarshal([]byte(spec), &s.spec); err != nil {
			log.Fatal(err)
		}
		ch := make(chan struct{})
		s.release.Store(&ch)
		serve := serveUpstream
		if role == groupOrigin {
			serve = serveOrigin
		}
		addrs, err := s.listenAll(serve)
		if err != nil {
			_ = out.Encode(reply{Err: err.Error()})
			os.Exit(1)
		}
		_ = out.Encode(reply{Addrs: addrs})
		handle = s.control
	case groupLoadgen:
		lg := &loadgen{}
		_ = out.Encode(reply{})
		handle = lg.handle
	default:
		log.Fatalf("unknown role %q", role)
	}
	if dir := os.Getenv("SCALETEST_CPUPROFILE"); dir != "" {
		f, err := os.Create(fmt.Sprintf("%s/%s-%d.pprof", dir, role, os.Getpid()))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	dec := json.NewDecoder(os.Stdin)
	for {
		var r request
		if err := dec.Decode(&r); err != nil {
			return // stdin closed: the coordinator is done or gone
		}
		if err := out.Encode(handle(r)); err != nil {
			os.Exit(1)
		}
	}
}

package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// sample is the machine's state at one moment of a phase.
type sample struct {
	at      time.Time
	rss     map[string]int64   // by process group, summed
	cpu     map[string]float64 // by process group, summed; "probe" is this process
	sock    sockstat
	slab    int64            // bytes, Slab of /proc/meminfo
	caches  map[string]int64 // bytes by slab cache (/proc/slabinfo, root only)
	kernel  map[string]int64 // drop and pressure counters (kernelCounters)
	proxy   []float64        // per proxyto process: proxyto_client_connections_total
	conns   []float64        // per proxyto process: proxyto_client_connections
	tunnels float64          // proxyto_tunnels_active, summed
	heap    float64          // go_memstats_heap_inuse_bytes, summed
	limited float64          // proxyto_limit_rejections_total{reason="conns"}, summed
	errors  float64          // proxyto_errors_total, summed
}

// sockstat is the TCP line of /proc/net/sockstat.
type sockstat struct{ inuse, tw, memPages int64 }

func readSockstat() sockstat {
	var s sockstat
	for _, line := range strings.Split(readProc("/proc/net/sockstat"), "\n") {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "inuse":
				s.inuse = v
			case "tw":
				s.tw = v
			case "mem":
				s.memPages = v
			}
		}
	}
	return s
}

// watchedTcpExt are the TcpExt counters of /proc/net/netstat that show a
// kernel setting was too small: a full accept queue, TCP memory pressure or
// exhaustion, TIME_WAIT overflow.
var watchedTcpExt = []string{"ListenOverflows", "ListenDrops", "TCPBacklogDrop", "TCPMemoryPressures", "TCPAbortOnMemory", "TCPTimeWaitOverflow"}

// kernelCounters reads watchedTcpExt, and the packets dropped because a
// CPU's input queue was full (second column of /proc/net/softnet_stat,
// netdev_max_backlog) as "softnet dropped". The counters are system-wide.
func kernelCounters() map[string]int64 {
	out := map[string]int64{}
	lines := strings.Split(readProc("/proc/net/netstat"), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j, name := range names {
			if slices.Contains(watchedTcpExt, name) {
				out[name], _ = strconv.ParseInt(values[j], 10, 64)
			}
		}
	}
	for _, line := range strings.Split(readProc("/proc/net/softnet_stat"), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			v, _ := strconv.ParseInt(f[1], 16, 64)
			out["softnet dropped"] += v
		}
	}
	return out
}

// slabCaches reads /proc/slabinfo (readable by root only): bytes held by
// each cache, num_objs × objsize. nil when unreadable.
func slabCaches() map[string]int64 {
	text := readProc("/proc/slabinfo")
	if text == "" {
		return nil
	}
	out := map[string]int64{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || strings.HasPrefix(f[0], "#") || f[0] == "slabinfo" {
			continue
		}
		objs, _ := strconv.ParseInt(f[2], 10, 64)
		size, _ := strconv.ParseInt(f[3], 10, 64)
		out[f[0]] = objs * size
	}
	return out
}

// slabGrowth lists the slab caches that grew most from a to b, per socket
// added: where the kernel's memory per connection goes.
func slabGrowth(a, b sample) string {
	sockets := b.sock.inuse - a.sock.inuse
	if a.caches == nil || b.caches == nil || sockets <= 0 {
		return ""
	}
	type g struct {
		name  string
		bytes int64
	}
	var gs []g
	var total int64
	for name, v := range b.caches {
		if d := v - a.caches[name]; d > 0 {
			gs = append(gs, g{name, d})
			total += d
		}
	}
	slices.SortFunc(gs, func(x, y g) int { return int(y.bytes - x.bytes) })
	var parts []string
	for i, x := range gs {
		if i == 6 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f B", x.name, float64(x.bytes)/float64(sockets)))
	}
	return fmt.Sprintf("%.0f B per TCP socket: %s", float64(total)/float64(sockets), strings.Join(parts, ", "))
}

// takeSample reads every running child's RSS and CPU time, the kernel's
// socket counters, and proxyto's /metrics.
func takeSample(proxytos []*proc) sample {
	s := sample{at: time.Now(), rss: map[string]int64{}, cpu: map[string]float64{}}
	procs.mu.Lock()
	all := append([]*proc(nil), procs.all...)
	procs.mu.Unlock()
	for _, p := range all {
		if p.alive() {
			s.rss[p.group] += rss(p.pid)
			if c := cpuSeconds(p.pid); c > 0 {
				p.lastCPU = c
			}
		}
		// An exited process's CPU time is what it had when last seen.
		s.cpu[p.group] += p.lastCPU
	}
	s.cpu["probe"] = cpuSeconds(os.Getpid())
	s.sock = readSockstat()
	s.slab = meminfo("Slab")
	s.caches = slabCaches()
	s.kernel = kernelCounters()
	for _, p := range proxytos {
		text, err := httpGet("http://" + p.admin + "/metrics")
		if err != nil {
			s.proxy = append(s.proxy, -1)
			s.conns = append(s.conns, -1)
			continue
		}
		s.proxy = append(s.proxy, metric(text, "proxyto_client_connections_total"))
		s.conns = append(s.conns, metric(text, "proxyto_client_connections"))
		s.tunnels += metric(text, "proxyto_tunnels_active")
		s.heap += metric(text, "go_memstats_heap_inuse_bytes")
		s.limited += metric(text, "proxyto_limit_rejections_total", `reason="conns"`)
		s.errors += metric(text, "proxyto_errors_total")
	}
	return s
}

// phaseResult is one phase's outcome and measurements.
type phaseResult struct {
	name     string
	n        int
	open     reply // summed over load generators
	verify   reply
	closed   reply
	openSecs float64
	start    sample // before opening
	peak     sample // everything open
	end      sample // everything closed again
	// probes[0] went through proxyto, probes[1] straight to the upstream
	// (the same path without proxyto). Each: the whole phase, then its
	// opening, holding, and verifying and closing.
	probes     [2][4]probeResult
	idleRSS    int64   // proxyto's summed RSS before any load
	idleHeap   float64 // and its Go heap in use
	atOrigin   int     // in-flight: requests the origins held at once
	maxConns   int     // limit: --max-conns per process
	failures   []string
	proxytoIDs string
}

func sumReplies(rs []reply) reply {
	var out reply
	for _, r := range rs {
		out.OK += r.OK
		out.Refused += r.Refused
		out.Secs = max(out.Secs, r.Secs)
		for k, v := range r.Errors {
			if out.Errors == nil {
				out.Errors = map[string]int{}
			}
			out.Errors[k] += v
		}
		for k, v := range r.RefusedBy {
			if out.RefusedBy == nil {
				out.RefusedBy = map[string]int{}
			}
			out.RefusedBy[k] += v
		}
		if out.Example == "" {
			out.Example = r.Example
		}
	}
	return out
}

func errorCount(r reply) int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// printTable writes the one table: a column per phase.
func printTable(w io.Writer, p plan, baseline sample, results []phaseResult) {
	fmt.Fprintf(w, "\nN=%d   processes: proxyto %d, upstream %d, origin %d, loadgen %d   idle proxyto RSS %s\n\n",
		p.N, p.Proxyto, p.Upstream, p.Origin, p.Loadgen, mib(baseline.rss[groupProxyto]))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label string, f func(r phaseResult) string) {
		cells := []string{label}
		for _, r := range results {
			cells = append(cells, f(r))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	row("", func(r phaseResult) string { return r.name })
	row("opened", func(r phaseResult) string { return fmt.Sprintf("%d of %d", r.open.OK, r.n) })
	row("refused 429 (FIN/RST)", func(r phaseResult) string {
		if r.maxConns == 0 {
			return "-"
		}
		return fmt.Sprintf("%d (%d/%d), max-conns %d×%d", r.open.Refused, r.open.RefusedBy["fin"], r.open.RefusedBy["reset"], r.maxConns, len(r.peak.conns))
	})
	row("verified", func(r phaseResult) string { return strconv.Itoa(r.verify.OK) })
	row("errors", func(r phaseResult) string {
		n := errorCount(r.open) + errorCount(r.verify) + errorCount(r.closed)
		if n == 0 {
			return "0"
		}
		all := sumReplies([]reply{r.open, r.verify, r.closed})
		return fmt.Sprintf("%d %s", n, topErrors(all.Errors))
	})
	row("set-up rate (/s)", func(r phaseResult) string {
		return fmt.Sprintf("%.0f (%.1fs)", float64(r.open.OK+r.open.Refused)/max(r.openSecs, 1e-9), r.openSecs)
	})
	row("proxyto RSS at peak", func(r phaseResult) string { return mib(r.peak.rss[groupProxyto]) })
	row("  growth per conn", func(r phaseResult) string {
		open := r.open.OK
		if open == 0 {
			return "-"
		}
		return kib(float64(r.peak.rss[groupProxyto]-r.idleRSS) / float64(open))
	})
	row("  Go heap in use, growth per conn", func(r phaseResult) string {
		if r.open.OK == 0 {
			return "-"
		}
		return kib((r.peak.heap - r.idleHeap) / float64(r.open.OK))
	})
	row("test processes RSS: upstream/origin/loadgen", func(r phaseResult) string {
		return fmt.Sprintf("%s/%s/%s", mib(r.peak.rss[groupUpstream]), mib(r.peak.rss[groupOrigin]), mib(r.peak.rss[groupLoadgen]))
	})
	row("proxyto conns at peak (per process)", func(r phaseResult) string { return spread(r.peak.conns) })
	row("accepted per process", func(r phaseResult) string { return spread(diff(r.end.proxy, r.start.proxy)) })
	row("kernel TCP sockets (sockstat)", func(r phaseResult) string {
		return fmt.Sprintf("%d -> %d", r.start.sock.inuse, r.peak.sock.inuse)
	})
	row("kernel TCP buffers (sockstat mem)", func(r phaseResult) string {
		return fmt.Sprintf("%s -> %s", mib(r.start.sock.memPages*4096), mib(r.peak.sock.memPages*4096))
	})
	row("kernel drops, pressure", func(r phaseResult) string {
		var parts []string
		for _, k := range append(slices.Clone(watchedTcpExt), "softnet dropped") {
			if d := r.end.kernel[k] - r.start.kernel[k]; d > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, d))
			}
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, ", ")
	})
	row("kernel slab per TCP socket", func(r phaseResult) string {
		d := r.peak.sock.inuse - r.start.sock.inuse
		if d <= 0 {
			return "-"
		}
		return kib(float64(r.peak.slab-r.start.slab) / float64(d))
	})
	probeRow := func(label string, pick func(phaseResult) probeResult) {
		row(label, func(r phaseResult) string {
			pr := pick(r)
			if !pr.ran {
				return "-"
			}
			out := fmt.Sprintf("%s/%s/%s (%d, %.0f/s)", ms(pr.p50), ms(pr.p99), ms(pr.max), pr.n, pr.rate)
			if pr.errorCount > 0 {
				out += fmt.Sprintf(", %d errors %s", pr.errorCount, topErrors(pr.errs))
			}
			return out
		})
	}
	windows := [4]string{"", "  opening", "  holding", "  verify, close"}
	for i, label := range []string{"probe via proxyto, ms p50/p99/max", "probe without proxyto (control)"} {
		for w, name := range windows {
			if w == 0 {
				name = label
			}
			probeRow(name, func(r phaseResult) probeResult { return r.probes[i][w] })
		}
	}
	for _, g := range []string{groupProxyto, groupUpstream, groupOrigin, groupLoadgen, "probe"} {
		label := "CPU s " + g
		if g == "probe" {
			label = "CPU s probe+coordinator"
		}
		row(label, func(r phaseResult) string { return fmt.Sprintf("%.1f", r.end.cpu[g]-r.start.cpu[g]) })
	}
	row("wall s", func(r phaseResult) string { return fmt.Sprintf("%.1f", r.end.at.Sub(r.start.at).Seconds()) })
	tw.Flush()
	for _, r := range results {
		if g := slabGrowth(r.start, r.peak); g != "" {
			fmt.Fprintf(w, "\nslab growth at the %s peak (/proc/slabinfo), %s\n", r.name, g)
			break
		}
	}
}

func topErrors(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return m[b] - m[a] })
	var parts []string
	for i, k := range keys {
		if i == 3 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// diff is a-b per process; -1 (unknown) where either is.
func diff(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		switch {
		case a[i] < 0 || i >= len(b) || b[i] < 0:
			out[i] = -1
		default:
			out[i] = a[i] - b[i]
		}
	}
	return out
}

// spread is "v" for one process, "sum: min–max" for several.
func spread(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	if slices.ContainsFunc(v, func(x float64) bool { return x < 0 }) {
		return "n/a (a process did not answer)"
	}
	if len(v) == 1 {
		return strconv.FormatFloat(v[0], 'f', 0, 64)
	}
	lo, hi, sum := v[0], v[0], 0.0
	for _, x := range v {
		lo, hi, sum = min(lo, x), max(hi, x), sum+x
	}
	return fmt.Sprintf("%.0f: %.0f-%.0f", sum, lo, hi)
}

func mib(b int64) string   { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

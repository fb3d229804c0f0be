package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Per-process descriptor costs, and what the plan keeps aside.
const (
	// fdReserve is kept free in every process for what is not a test
	// connection: the runtime, listeners, epoll, pipes to the coordinator,
	// the admin listener and /metrics scrapes, probe connections.
	fdReserve = 256
	// fdsProxyto and fdsUpstream: a tunnel or request holds a client and an
	// upstream socket in proxyto, and an inbound and an outbound one in the
	// test's upstream proxy. Origins and load generators hold one.
	fdsProxyto  = 2
	fdsUpstream = 2
	fdsOne      = 1
	// imbalanceSigmas: the kernel hashes each connection's 4-tuple onto
	// one listener of the SO_REUSEPORT group, so a process gets its share
	// plus binomial noise; the plan leaves this many standard deviations.
	imbalanceSigmas = 4
	// maxIPsPerRole: the last octet of 127.<phase>.<role>.<n>.
	maxIPsPerRole = 254
)

// Loopback addresses: 127.<phase>.<role>.<n>. Each phase gets its own source,
// upstream and origin addresses, so connections a phase left in TIME_WAIT
// never take ports the next phase needs, and a 4-tuple space (one source
// address, one destination address and port) never holds more than
// pairCap connections.
const (
	roleSource   = 1
	roleUpstream = 2
	roleOrigin   = 3
	probePhase   = 9 // the probe's own addresses: 127.9.<role>.1
)

// machine is what the plan is made for: limits read from the kernel.
type machine struct {
	NoFile         int   // RLIMIT_NOFILE hard limit: descriptors one process may open
	PortLo, PortHi int   // net.ipv4.ip_local_port_range
	FileMax        int64 // fs.file-max
	FilesOpen      int64 // first field of fs.file-nr
	ConntrackMax   int64 // net.netfilter.nf_conntrack_max; 0 without conntrack
	MemAvailable   int64 // bytes, MemAvailable of /proc/meminfo
	CPUs           int
	Root           bool
}

// options are the run's knobs that shape the plan.
type options struct {
	N            int
	Rate         float64 // tunnels or requests opened per second, all load generators together
	ProxytoProcs int     // 0: as the descriptor limit demands
	Phases       []string
}

// Phase names and the traffic each one sends.
const (
	phaseHold     = "hold"      // CONNECT tunnels to an echo origin, held open
	phaseInflight = "in-flight" // plain-HTTP requests the origin holds until released
	phaseLimit    = "limit"     // CONNECT tunnels against --max-conns below N
)

// phasePlan is where one phase's connections go.
type phasePlan struct {
	Name   string
	Num    int        // the second octet of its addresses
	Kind   string     // "connect" or "http"
	Src    [][]string // per load generator: source addresses
	Up     [][]string // per upstream process: listen addresses
	Origin [][]string // per origin process: listen addresses
}

// plan is the whole run's sharding.
type plan struct {
	N                                   int
	Proxyto, Upstream, Origin, Loadgen  int // processes
	ProxytoAuto                         bool
	PerProcess                          int // descriptors per process after fdReserve
	PairCap                             int // connections per (source address, destination) pair
	ProxytoCap, UpstreamCap, OneFDCap   int // connections one process of each kind holds
	Phases                              []phasePlan
	EstMemory                           int64 // bytes the run is expected to use at its peak
	Problems                            []string
	ProxytoWorstShare, ProxytoMeanShare int
}

// estBytesPerConn is a rough whole-machine cost of one tunnel at the peak,
// for the memory check only: six sockets in the kernel (~23 KiB) and the
// four processes' user space (~40 KiB, most of it the test's own upstream
// and origin goroutines), as measured at N=5,000.
const estBytesPerConn = 64 << 10

// makePlan shards opts.N over processes and addresses within m's limits. A
// plan with Problems cannot run as is: each says what would be needed.
func makePlan(opts options, m machine) plan {
	p := plan{N: opts.N}
	p.PerProcess = m.NoFile - fdReserve
	if p.PerProcess < 64 {
		p.Problems = append(p.Problems, fmt.Sprintf("RLIMIT_NOFILE is %d: each process needs at least %d descriptors (ulimit -n)", m.NoFile, fdReserve+64))
		return p
	}
	p.ProxytoCap = p.PerProcess / fdsProxyto
	p.UpstreamCap = p.PerProcess / fdsUpstream
	p.OneFDCap = p.PerProcess / fdsOne
	ports := m.PortHi - m.PortLo + 1
	// Half the ephemeral range per pair: connect() finds a free port quickly
	// and TIME_WAIT leftovers fit in the other half.
	p.PairCap = ports / 2
	if p.PairCap < 100 {
		p.Problems = append(p.Problems, fmt.Sprintf("net.ipv4.ip_local_port_range %d-%d leaves %d ports: widen it (e.g. 1024 65535)", m.PortLo, m.PortHi, ports))
		return p
	}

	if opts.ProxytoProcs > 0 {
		p.Proxyto = opts.ProxytoProcs
	} else {
		p.ProxytoAuto = true
		p.Proxyto = 1
		for worstShare(p.N, p.Proxyto) > p.ProxytoCap {
			p.Proxyto++
		}
	}
	p.ProxytoMeanShare = ceilDiv(p.N, p.Proxyto)
	p.ProxytoWorstShare = worstShare(p.N, p.Proxyto)
	if p.ProxytoWorstShare > p.ProxytoCap {
		p.Problems = append(p.Problems, fmt.Sprintf("%d proxyto processes get up to ~%d connections each, above the %d their %d descriptors hold: use more processes or raise RLIMIT_NOFILE to %d",
			p.Proxyto, p.ProxytoWorstShare, p.ProxytoCap, m.NoFile, fdsProxyto*p.ProxytoWorstShare+fdReserve))
	}
	p.Upstream = ceilDiv(p.N, p.UpstreamCap)
	p.Origin = ceilDiv(p.N, p.OneFDCap)
	p.Loadgen = ceilDiv(p.N, p.OneFDCap)

	for i, name := range opts.Phases {
		ph := phasePlan{Name: name, Num: i + 1, Kind: "connect"}
		if name == phaseInflight {
			ph.Kind = "http"
		}
		var err error
		if ph.Src, err = shardIPs(ph.Num, roleSource, p.Loadgen, p.N, p.PairCap); err == nil {
			if ph.Up, err = shardIPs(ph.Num, roleUpstream, p.Upstream, p.N, p.PairCap); err == nil {
				ph.Origin, err = shardIPs(ph.Num, roleOrigin, p.Origin, p.N, p.PairCap)
			}
		}
		if err != nil {
			p.Problems = append(p.Problems, fmt.Sprintf("phase %s: %v", name, err))
		}
		p.Phases = append(p.Phases, ph)
	}

	total := int64(p.N)*int64(2*fdsProxyto+fdsUpstream) + int64(fdReserve)*int64(p.Proxyto+p.Upstream+p.Origin+p.Loadgen)
	if m.FileMax > 0 && m.FilesOpen+total > m.FileMax && !m.Root {
		p.Problems = append(p.Problems, fmt.Sprintf("fs.file-max %d with %d open leaves less than the %d descriptors the run holds: raise fs.file-max (as root)", m.FileMax, m.FilesOpen, total))
	}
	p.EstMemory = int64(p.N) * estBytesPerConn
	if m.MemAvailable > 0 && p.EstMemory > m.MemAvailable*9/10 {
		p.Problems = append(p.Problems, fmt.Sprintf("the run needs about %s of memory at its peak (%s per tunnel across all processes and the kernel), %s is available",
			human(p.EstMemory), human(estBytesPerConn), human(m.MemAvailable)))
	}
	return p
}

// worstShare is the most connections one of procs processes is expected to
// get when the kernel hashes n connections over them: mean plus
// imbalanceSigmas standard deviations of the binomial.
func worstShare(n, procs int) int {
	mean := float64(n) / float64(procs)
	sd := math.Sqrt(mean * (1 - 1/float64(procs)))
	return int(math.Ceil(mean + imbalanceSigmas*sd))
}

// shardIPs gives each of shards processes, which share n connections
// equally, enough addresses of 127.phase.role.x that no address takes more
// than pairCap of them.
func shardIPs(phase, role, shards, n, pairCap int) ([][]string, error) {
	per := ceilDiv(ceilDiv(n, shards), pairCap)
	if shards*per > maxIPsPerRole {
		return nil, fmt.Errorf("%d processes × %d addresses each exceed the %d addresses of 127.%d.%d.0/24: widen net.ipv4.ip_local_port_range", shards, per, maxIPsPerRole, phase, role)
	}
	out := make([][]string, shards)
	k := 1
	for i := range out {
		for range per {
			out[i] = append(out[i], fmt.Sprintf("127.%d.%d.%d", phase, role, k))
			k++
		}
	}
	return out, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// print writes the plan for a person to read.
func (p plan) print(w io.Writer, m machine, opts options) {
	fmt.Fprintf(w, "machine: %d CPUs, RLIMIT_NOFILE %d per process, ephemeral ports %d-%d, %s available, root: %v\n",
		m.CPUs, m.NoFile, m.PortLo, m.PortHi, human(m.MemAvailable), m.Root)
	if p.PerProcess <= 0 || p.PairCap <= 0 {
		return
	}
	how := "as the descriptor limit demands"
	if !p.ProxytoAuto {
		how = "as asked"
	}
	fmt.Fprintf(w, "plan for N=%d (%d descriptors per process after %d reserved; at most %d connections per source/destination address pair):\n",
		p.N, p.PerProcess, fdReserve, p.PairCap)
	fmt.Fprintf(w, "  proxyto   %3d process(es) on one port%s, %s: ~%d connections each, up to ~%d with the kernel's hashing (room for %d)\n",
		p.Proxyto, map[bool]string{true: " with --reuse-port", false: ""}[p.Proxyto > 1], how, p.ProxytoMeanShare, p.ProxytoWorstShare, p.ProxytoCap)
	if p.Proxyto > 1 && p.ProxytoAuto {
		fmt.Fprintf(w, "            (one process would need RLIMIT_NOFILE >= %d; the hard limit is %d and could not be raised)\n", fdsProxyto*p.N+fdReserve, m.NoFile)
	}
	fmt.Fprintf(w, "  upstream  %3d process(es), %d connections each (room for %d: 2 descriptors each)\n", p.Upstream, ceilDiv(p.N, p.Upstream), p.UpstreamCap)
	fmt.Fprintf(w, "  origin    %3d process(es), %d connections each (room for %d)\n", p.Origin, ceilDiv(p.N, p.Origin), p.OneFDCap)
	fmt.Fprintf(w, "  loadgen   %3d process(es), %d connections each (room for %d), at %.0f/s together\n", p.Loadgen, ceilDiv(p.N, p.Loadgen), p.OneFDCap, opts.Rate)
	for _, ph := range p.Phases {
		if ph.Src == nil || ph.Up == nil || ph.Origin == nil {
			continue
		}
		fmt.Fprintf(w, "  phase %-9s sources %s, upstreams %s, origins %s\n", ph.Name, ipRange(ph.Src), ipRange(ph.Up), ipRange(ph.Origin))
	}
	fmt.Fprintf(w, "  ports: no address pair carries more than %d connections, so net.ipv4.ip_local_port_range (%d ports) need not change\n", p.PairCap, m.PortHi-m.PortLo+1)
	fmt.Fprintf(w, "  memory at the peak: about %s (%s per tunnel, all processes and the kernel)\n", human(p.EstMemory), human(estBytesPerConn))
	for _, pr := range p.Problems {
		fmt.Fprintf(w, "  NEEDED: %s\n", pr)
	}
}

// ipRange writes per-shard address lists compactly: "127.1.1.1-127.1.1.8 (4 × 2)".
func ipRange(shards [][]string) string {
	first, last := shards[0][0], shards[len(shards)-1][len(shards[len(shards)-1])-1]
	if first == last {
		return first
	}
	return fmt.Sprintf("%s-%s (%d×%d)", first, strings.TrimPrefix(last, commonPrefix(first, last)), len(shards), len(shards[0]))
}

func commonPrefix(a, b string) string {
	i := strings.LastIndexByte(a, '.')
	if i >= 0 && strings.HasPrefix(b, a[:i+1]) {
		return a[:i+1]
	}
	return ""
}

// human formats a byte count with a binary unit.
func human(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// readMachine reads the limits the plan is made for. Go raised this
// process's soft RLIMIT_NOFILE to the hard one at start, and every child is
// a Go program (or proxyto) that does the same, so the hard limit counts.
// When root, it first tries to raise the hard limit to what one process
// would need for the whole run (often refused in containers).
func readMachine(want int) machine {
	m := machine{CPUs: runtime.NumCPU(), Root: os.Geteuid() == 0}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		if m.Root && lim.Max < uint64(want) {
			up := syscall.Rlimit{Cur: uint64(want), Max: uint64(want)}
			if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
				lim = up
			}
		}
		m.NoFile = int(min(lim.Max, 1<<30))
	}
	if f := strings.Fields(readProc("/proc/sys/net/ipv4/ip_local_port_range")); len(f) == 2 {
		m.PortLo, _ = strconv.Atoi(f[0])
		m.PortHi, _ = strconv.Atoi(f[1])
	}
	m.FileMax, _ = strconv.ParseInt(readProc("/proc/sys/fs/file-max"), 10, 64)
	if f := strings.Fields(readProc("/proc/sys/fs/file-nr")); len(f) > 0 {
		m.FilesOpen, _ = strconv.ParseInt(f[0], 10, 64)
	}
	m.ConntrackMax, _ = strconv.ParseInt(readProc("/proc/sys/net/netfilter/nf_conntrack_max"), 10, 64)
	m.MemAvailable = meminfo("MemAvailable")
	return m
}

// readProc returns a /proc file's content, trimmed; "" when unreadable.
func readProc(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// meminfo returns a /proc/meminfo field in bytes.
func meminfo(field string) int64 {
	for _, line := range strings.Split(readProc("/proc/meminfo"), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// sysctlNeed is one kernel setting the run wants at least at some value.
type sysctlNeed struct {
	name string // dotted name: net.core.somaxconn
	// want returns the value to write, or "" when current already suffices.
	want func(current string) string
	why  string
}

// procSys is where sysctls live; tests point it elsewhere.
var procSys = "/proc/sys/"

func (s sysctlNeed) path() string { return procSys + strings.ReplaceAll(s.name, ".", "/") }

// atLeast wants a single-number setting to be at least v.
func atLeast(v int64) func(string) string {
	return func(cur string) string {
		n, err := strconv.ParseInt(cur, 10, 64)
		if err == nil && n >= v {
			return ""
		}
		return strconv.FormatInt(v, 10)
	}
}

// tripleAtLeast wants each of a three-number setting (tcp_mem) to be at
// least the given values.
func tripleAtLeast(v [3]int64) func(string) string {
	return func(cur string) string {
		f := strings.Fields(cur)
		if len(f) != 3 {
			return ""
		}
		out, raise := make([]string, 3), false
		for i := range f {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			if n < v[i] {
				n, raise = v[i], true
			}
			out[i] = strconv.FormatInt(n, 10)
		}
		if !raise {
			return ""
		}
		return strings.Join(out, " ")
	}
}

// sysctlNeeds lists what a run of p wants from the kernel. Up to 10,000
// connections the defaults of any recent kernel do; above, the accept
// queues must absorb the opening rate while a loaded machine does not run
// proxyto for a moment. Settings the plan made unnecessary are not touched:
// ip_local_port_range, because the addresses are sharded so that no pair
// of addresses needs more than half of it.
func sysctlNeeds(p plan, phases int) []sysctlNeed {
	if p.N <= 10000 {
		return nil
	}
	n := int64(p.N)
	// Every process's descriptors, and a margin for the rest of the system.
	files := n*int64(2*fdsProxyto+fdsUpstream) + 1<<16
	// Three connections per tunnel (client, upstream, origin) and, since
	// conntrack keeps closed ones for up to two minutes, every phase's.
	conntrack := 3*n*int64(phases) + 1<<16
	// tcp_mem is in pages for all TCP buffers. An idle socket holds almost
	// none, but when every in-flight response moves at once each of six
	// sockets per request may hold a page: keep pressure mode above that.
	pages := 6 * n
	return []sysctlNeed{
		{"net.core.somaxconn", atLeast(65535), "accept queue of every listener"},
		{"net.ipv4.tcp_max_syn_backlog", atLeast(65535), "half-open connections while the accept queues fill"},
		{"net.core.netdev_max_backlog", atLeast(16384), "loopback packets queued per CPU when every response moves at once"},
		{"fs.file-max", atLeast(files), "descriptors of all processes together"},
		{"net.netfilter.nf_conntrack_max", atLeast(conntrack), "tracked connections (when conntrack is loaded)"},
		{"net.ipv4.tcp_mem", tripleAtLeast([3]int64{pages / 2, pages, pages * 2}), "pages of TCP buffers before pressure mode"},
		{"net.ipv4.tcp_max_tw_buckets", atLeast(3 * n * int64(phases)), "closed connections kept in TIME_WAIT (overflow only logs)"},
	}
}

// sysctls raises settings and puts them back. Safe for concurrent use;
// restore runs once.
type sysctls struct {
	mu       sync.Mutex
	changed  []sysctlChange
	restored bool
}

type sysctlChange struct{ name, path, old, new string }

// raise writes every need that the current value does not meet. Not root,
// it only reports. It returns the needs left unmet.
func (s *sysctls) raise(needs []sysctlNeed, root bool, w io.Writer) (unmet []string) {
	for _, nd := range needs {
		cur := readProc(nd.path())
		if cur == "" {
			continue // not on this kernel (conntrack not loaded)
		}
		want := nd.want(cur)
		if want == "" {
			continue
		}
		if !root {
			unmet = append(unmet, fmt.Sprintf("%s = %s (now %s; %s)", nd.name, want, strings.Join(strings.Fields(cur), " "), nd.why))
			continue
		}
		if err := os.WriteFile(nd.path(), []byte(want), 0o644); err != nil {
			unmet = append(unmet, fmt.Sprintf("%s = %s (now %s; writing failed: %v)", nd.name, want, cur, err))
			continue
		}
		s.mu.Lock()
		s.changed = append(s.changed, sysctlChange{nd.name, nd.path(), cur, want})
		s.mu.Unlock()
		fmt.Fprintf(w, "sysctl %s: %s -> %s (restored at exit; by hand: sysctl -w %s=%q)\n", nd.name, strings.Join(strings.Fields(cur), " "), want, nd.name, cur)
	}
	return unmet
}

// restore writes back every value raise changed, last change first.
func (s *sysctls) restore(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.restored {
		return nil
	}
	s.restored = true
	var errs []error
	for i := len(s.changed) - 1; i >= 0; i-- {
		c := s.changed[i]
		if err := os.WriteFile(c.path, []byte(c.old), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s to %q: %w", c.name, c.old, err))
			continue
		}
		fmt.Fprintf(w, "sysctl %s restored to %s\n", c.name, strings.Join(strings.Fields(c.old), " "))
	}
	return errors.Join(errs...)
}

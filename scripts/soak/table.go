package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// row counts the exchanges of one table line.
type row struct {
	n   [numOutcomes]int
	dur []time.Duration
}

func (r *row) add(res result) {
	r.n[res.out]++
	r.dur = append(r.dur, res.dur)
}

func (r *row) count() int { return len(r.dur) }

// quantile returns the q-quantile of the row's durations (sorted on first
// use after adds).
func (r *row) quantile(q float64) time.Duration {
	if len(r.dur) == 0 {
		return 0
	}
	slices.Sort(r.dur)
	return r.dur[min(len(r.dur)-1, int(q*float64(len(r.dur))))]
}

// problemKey groups unexpected outcomes and hangs.
type problemKey struct {
	phase  string // "" for the mixed population
	kind   kind
	up     upstream
	fault  fault
	out    outcome
	reason string
}

type problem struct {
	n      int
	detail string // the first one's
	client string // the first one's client address
	target string // and request target
}

// tally collects results from every client; safe for concurrent use.
type tally struct {
	mu       sync.Mutex
	byKind   [numKinds]row
	byFault  [numFaults]row
	byUp     [numUpstreams]row
	extra    map[string]*row // other phases: slowloris, probes
	problems map[problemKey]*problem
}

func newTally() *tally {
	return &tally{extra: map[string]*row{}, problems: map[problemKey]*problem{}}
}

func (t *tally) add(res result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byKind[res.kind].add(res)
	t.byFault[res.fault].add(res)
	t.byUp[res.up].add(res)
	t.problem(res)
}

// addPhase counts res, a result of another phase than the mixed
// population, under its phase's own line and, when it is a problem, among
// the problems.
func (t *tally) addPhase(res result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.extra[res.phase]
	if r == nil {
		r = &row{}
		t.extra[res.phase] = r
	}
	r.add(res)
	t.problem(res)
}

func (t *tally) problem(res result) {
	if res.out != outUnexpected && res.out != outHang {
		return
	}
	k := problemKey{res.phase, res.kind, res.up, res.fault, res.out, res.reason}
	p := t.problems[k]
	if p == nil {
		p = &problem{detail: res.detail, client: res.client, target: res.target}
		t.problems[k] = p
	}
	p.n++
}

// counts returns the number of unexpected outcomes and of hangs, over every
// phase.
func (t *tally) counts() (unexpected, hangs int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, p := range t.problems {
		if k.out == outHang {
			hangs += p.n
		} else {
			unexpected += p.n
		}
	}
	return unexpected, hangs
}

// print writes the table, then the problems; access returns proxyto's
// access lines for a client address and request target, shown for each
// problem's first one.
func (t *tally) print(w io.Writer, access func(client, target string) []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(w, "%-26s %8s %8s %8s %10s %6s %9s %9s\n", "", "count", "ok", "expected", "unexpected", "hang", "p50", "p99")
	line := func(name string, r *row) {
		if r.count() == 0 {
			return
		}
		fmt.Fprintf(w, "%-26s %8d %8d %8d %10d %6d %9s %9s\n", name, r.count(),
			r.n[outOK], r.n[outExpected], r.n[outUnexpected], r.n[outHang], ms(r.quantile(.5)), ms(r.quantile(.99)))
	}
	section := func(title string) { fmt.Fprintf(w, "%s\n", title) }
	section("by kind")
	var all row
	for k := range numKinds {
		line("  "+k.String(), &t.byKind[k])
		for o := range numOutcomes {
			all.n[o] += t.byKind[k].n[o]
		}
		all.dur = append(all.dur, t.byKind[k].dur...)
	}
	line("  all", &all)
	section("by fault")
	for f := range numFaults {
		line("  "+f.String(), &t.byFault[f])
	}
	section("by upstream")
	for u := range numUpstreams {
		line("  "+u.String(), &t.byUp[u])
	}
	if len(t.extra) > 0 {
		section("other phases")
		names := make([]string, 0, len(t.extra))
		for n := range t.extra {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			line("  "+n, t.extra[n])
		}
	}
	t.printProblems(w, access)
}

// printProblems lists unexpected outcomes and hangs grouped by kind and
// reason, with how they split over upstreams and faults and the first
// one's detail.
func (t *tally) printProblems(w io.Writer, access func(client, target string) []string) {
	type group struct {
		phase  string
		kind   kind
		out    outcome
		reason string
	}
	type agg struct {
		n      int
		ups    map[string]int
		faults map[string]int
		detail string
		client string
		target string
	}
	groups := map[group]*agg{}
	for k, p := range t.problems {
		g := group{k.phase, k.kind, k.out, k.reason}
		a := groups[g]
		if a == nil {
			a = &agg{ups: map[string]int{}, faults: map[string]int{}, detail: p.detail, client: p.client, target: p.target}
			groups[g] = a
		}
		a.n += p.n
		if k.phase == "" {
			a.ups[k.up.String()] += p.n
			a.faults[k.fault.String()] += p.n
		}
	}
	if len(groups) == 0 {
		return
	}
	keys := make([]group, 0, len(groups))
	for g := range groups {
		keys = append(keys, g)
	}
	sort.Slice(keys, func(i, j int) bool {
		if groups[keys[i]].n != groups[keys[j]].n {
			return groups[keys[i]].n > groups[keys[j]].n
		}
		return keys[i].reason < keys[j].reason
	})
	fmt.Fprintf(w, "\nunexpected outcomes and hangs\n")
	for _, g := range keys {
		a := groups[g]
		what := "UNEXPECTED"
		if g.out == outHang {
			what = "HANG"
		}
		where := g.kind.String()
		if g.phase != "" {
			where = g.phase
		}
		fmt.Fprintf(w, "  %s ×%d  %s: %s\n", what, a.n, where, g.reason)
		if len(a.ups) > 0 {
			fmt.Fprintf(w, "      upstreams %s; faults %s\n", counts(a.ups), counts(a.faults))
		}
		fmt.Fprintf(w, "      first: %s\n", oneLine(a.detail))
		if a.client != "" {
			for _, l := range access(a.client, a.target) {
				fmt.Fprintf(w, "      proxyto: %s\n", oneLine(l))
			}
		}
	}
}

// counts renders name→count as "a 3, b 1", largest first.
func counts(m map[string]int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, m[n])
	}
	return strings.Join(parts, ", ")
}

// defects counts the problems that carry the signatures of known proxyto
// defects.
func (t *tally) defects() (stalePool, earlyFIN, bodyStall int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, p := range t.problems {
		if isStalePool(k) {
			stalePool += p.n
		}
		if k.phase == "" && k.kind == kTunnelEarly && k.reason == "closed without an answer" {
			earlyFIN += p.n
		}
		if strings.HasSuffix(k.reason, bodyStalled) {
			bodyStall += p.n
		}
	}
	return stalePool, earlyFIN, bodyStall
}

// isStalePool: a request with a body through an http or https upstream
// (where proxyto pools connections) answered 502 connection_terminated
// when its own fault wants something else (a clean request wants 200, a
// garbage fault http_protocol_error, …): proxyto sent it on a pooled
// connection the upstream had closed (tinyproxy-like) instead of dropping
// the connection or sending the request again on a fresh one.
func isStalePool(k problemKey) bool {
	if k.phase != "" || k.up == upSOCKS5 || !strings.Contains(k.reason, "got 502 connection_terminated, want ") {
		return false
	}
	return k.kind == kUpload || k.kind == kPipeline && !strings.HasPrefix(k.reason, "GET: ")
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return s
}

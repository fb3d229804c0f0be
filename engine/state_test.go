package engine

import (
	"fmt"
	"strings"
	"testing"
)

// machine is one transition table with its names, start states and the
// states it may end in, for the checks below.
type machine struct {
	name   string
	next   []uint32
	names  []string
	starts []int
	final  []int // states with no way out
}

var machines = []machine{
	{"client", clientNext[:], clientStateNames[:], []int{int(cReadingHead), int(cAwaitingProxy)}, []int{int(cClosed)}},
	{"tunnel", tunnelNext[:], tunnelStateNames[:], []int{int(tNew)}, []int{int(tDone)}},
	{"http", httpNext[:], httpStateNames[:], []int{int(hIdle)}, nil},
}

// TestTransitionTables checks each table's shape: every state is reachable
// from a start, every state but the final ones can leave, and the final
// ones cannot.
func TestTransitionTables(t *testing.T) {
	for _, m := range machines {
		t.Run(m.name, func(t *testing.T) {
			seen := map[int]bool{}
			for _, s := range m.starts {
				seen[s] = true
			}
			queue := append([]int(nil), m.starts...)
			for len(queue) > 0 {
				s := queue[0]
				queue = queue[1:]
				for to := range m.next {
					if m.next[s]&(1<<to) != 0 && !seen[to] {
						seen[to] = true
						queue = append(queue, to)
					}
				}
			}
			for s := range m.next {
				if !seen[s] {
					t.Errorf("state %s cannot be reached from a start state", m.names[s])
				}
				final := false
				for _, f := range m.final {
					final = final || f == s
				}
				if final != (m.next[s] == 0) {
					t.Errorf("state %s: final %v, but has %d ways out", m.names[s], final, popcount(m.next[s]))
				}
			}
		})
	}
}

func popcount(x uint32) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// TestIllegalTransitionPanicsInTests: a transition no table lists is a bug,
// and tests must not miss it.
func TestIllegalTransitionPanicsInTests(t *testing.T) {
	e, err := New(Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		do   func()
	}{
		{"client closed → reading head", func() {
			cc := &clientConn{e: e, st: cClosed}
			cc.setState(cReadingHead)
		}},
		{"tunnel relaying → dialing", func() {
			tx := &tunnelExchange{cc: &clientConn{e: e}, st: tRelaying}
			tx.setState(tDialing)
		}},
		{"http streaming → sending", func() {
			x := &httpExchange{cc: &clientConn{e: e}, st: hStreaming}
			x.setState(hSending)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), "illegal") {
					t.Fatalf("recovered %v, want a panic naming the illegal transition", r)
				}
			}()
			tc.do()
		})
	}
}

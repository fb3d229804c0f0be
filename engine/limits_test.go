package engine

import "testing"

// The descriptor budget: what clients take, what the pool may keep beside
// them, and that a refused take leaves nothing claimed.
func TestFDBudget(t *testing.T) {
	type step struct {
		op   string // "take", "put", "pool", "unpool", "mayPool"
		n    int
		want bool // for take and mayPool
	}
	tests := []struct {
		name           string
		limit, reserve int
		steps          []step
	}{
		{"plain clients fill it", 100, 90, []step{
			{"take", fdsPlain, true}, {"take", fdsPlain, true}, {"take", fdsPlain, true},
			{"take", fdsPlain, true}, {"take", fdsPlain, true}, {"take", fdsPlain, false},
			{"put", fdsPlain, false}, {"take", fdsPlain, true},
		}},
		{"a TLS client weighs two plain ones", 100, 90, []step{
			{"take", fdsTLS, true}, {"take", fdsTLS, true}, {"take", fdsTLS, false},
			{"take", fdsPlain, true}, {"take", fdsPlain, false},
		}},
		{"the pool keeps only what is left", 100, 90, []step{
			{"take", fdsPlain, true}, {"take", fdsPlain, true}, {"take", fdsPlain, true},
			{"take", fdsPlain, true}, {"mayPool", 0, true}, {"pool", 1, false},
			{"mayPool", 0, true}, {"pool", 1, false}, {"mayPool", 0, false},
			// clients come first: an idle connection does not refuse them
			{"take", fdsPlain, true}, {"mayPool", 0, false},
			{"put", fdsPlain, false}, {"unpool", 1, false}, {"mayPool", 0, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := fdBudget{limit: tc.limit, reserve: tc.reserve}
			for i, s := range tc.steps {
				switch s.op {
				case "take":
					if got := b.take(s.n); got != s.want {
						t.Fatalf("step %d: take(%d) = %v, want %v (used %d)", i, s.n, got, s.want, b.used.Load())
					}
				case "put":
					b.put(s.n)
				case "pool":
					b.pooled.Add(int64(s.n))
				case "unpool":
					b.pooled.Add(-int64(s.n))
				case "mayPool":
					if got := b.mayPool(); got != s.want {
						t.Fatalf("step %d: mayPool = %v, want %v (used %d, pooled %d)", i, got, s.want, b.used.Load(), b.pooled.Load())
					}
				}
			}
		})
	}
	b := fdBudget{limit: 20000, reserve: 64 + 2*4*64 + 256}
	if got := b.conns(); got != 9584 {
		t.Errorf("conns at 20,000 descriptors, 2 loops: %d, want 9584", got)
	}
}

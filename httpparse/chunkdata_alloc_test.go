//go:build !race

package httpparse

import "testing"

func TestScanDataAllocs(t *testing.T) {
	var s ChunkScanner
	if n := testing.AllocsPerRun(100, func() {
		s.Reset()
		for p := chunkedBody; len(p) > 0; {
			n, _, done, err := s.ScanData(p)
			if err != nil || done {
				return
			}
			p = p[n:]
		}
	}); n != 0 {
		t.Errorf("ScanData: %v allocs per body, want 0", n)
	}
}

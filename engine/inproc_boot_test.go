package engine_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/proxyto/proxyto/engine"
)

// TestInprocBootConnectAtOnce connects the moment Start returns. gnet calls
// OnBoot before it creates its loops, so a Start that returned on OnBoot let
// the accept loop's Register race with gnet's activateReactors (a data race
// under -race, and "no answer" without it when Register found no loop).
// Regression test for a2684ec (Start waits for a loop to open a connection).
func TestInprocBootConnectAtOnce(t *testing.T) {
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			te := startEngineNoProbe(t, engine.Config{Loops: 2})
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for range 8 {
				c := dialClient(t, te.addr)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := c.c.Write([]byte(get("example.com", "/", ""))); err != nil {
						errs <- err
						return
					}
					r, err := c.read("GET")
					if err != nil {
						errs <- fmt.Errorf("no answer: %w", err)
						return
					}
					if r.StatusCode != 400 {
						errs <- fmt.Errorf("status %d, want 400 (missing X-Proxy-To)", r.StatusCode)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

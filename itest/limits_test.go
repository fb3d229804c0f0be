package itest

import (
	"net/http"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

// TestDescriptorBudgetRefusesCleanly: under a small descriptor limit,
// proxyto admits what the limit can hold (two descriptors a tunnel, beside a
// reserve), answers the rest 429 and closes them, and stays up: gnet stops
// the whole process when accept runs out of descriptors, so proxyto must
// never let it. Once tunnels close, new ones are admitted again.
func TestDescriptorBudgetRefusesCleanly(t *testing.T) {
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	echo := harness.StartEchoOrigin(t)
	p := harness.StartProxytoLimited(t, 128)
	var open []*harness.Client
	ok, refused := 0, 0
	for range 120 {
		c := harness.Dial(t, p.Addr)
		c.WriteString(harness.ConnectHead(echo.Addr, up.Addr))
		resp, err := c.ReadResponse(http.MethodConnect)
		switch {
		case err != nil:
			t.Fatalf("after %d tunnels and %d refusals: no answer: %v", ok, refused, err)
		case resp.StatusCode == http.StatusOK:
			c.EchoRoundTrip("x")
			ok++
			open = append(open, c)
		case resp.StatusCode == http.StatusTooManyRequests:
			refused++
			_ = c.Close()
		default:
			t.Fatalf("after %d tunnels: status %s, want 200 or 429", ok, resp.Status)
		}
	}
	if ok == 0 || refused == 0 {
		t.Fatalf("%d tunnels admitted, %d refused: want both under a limit of 128 descriptors", ok, refused)
	}
	select {
	case <-p.Done():
		t.Fatalf("proxyto exited with %d tunnels open:\n%s", ok, p.Output())
	default:
	}
	for _, c := range open {
		c.EchoRoundTrip("still here")
		_ = c.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for scrapeMetrics(t, p).value(t, "proxyto_client_connections", nil) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("client connections did not close")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	c.EchoRoundTrip("after")
	t.Logf("%d tunnels admitted, %d refused with 429", ok, refused)
}

package itest

// Several processes on one port (docs/scaling.md, "--reuse-port"): with --reuse-port on each, two
// proxytos share a listener and the kernel spreads connections over both;
// without it on the newcomer, a port already in use refuses to start.

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

func TestReusePortSpreadsConnectionsOverProcesses(t *testing.T) {
	a := harness.StartProxyto(t, "--reuse-port", "--no-access-log")
	b := harness.StartProxyto(t, "--reuse-port", "--no-access-log", "--listen", a.Addr)
	if a.PID == b.PID || b.Addr != a.Addr {
		t.Fatalf("want two processes on one port, got pid %d on %s and pid %d on %s", a.PID, a.Addr, b.PID, b.Addr)
	}

	// The harness's readiness checks connected too: count from here.
	procs := []*harness.Proxyto{a, b}
	accepted := func(p *harness.Proxyto) float64 {
		return scrapeMetrics(t, p).value(t, "proxyto_client_connections_total", nil)
	}
	var base [2]float64
	for i, p := range procs {
		base[i] = accepted(p)
	}

	// Each connection asks for something proxyto answers itself (400: no
	// X-Proxy-To), so it is accepted, answered and closed. The kernel
	// hashes each connection's 4-tuple onto one listener of the group:
	// all 200 landing on one process has odds of 2^-199.
	const conns = 200
	for i := range conns {
		c, err := net.DialTimeout("tcp", a.Addr, opsWait)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(opsWait))
		if _, err := c.Write([]byte("GET http://origin.invalid/ HTTP/1.1\r\nHost: origin.invalid\r\n\r\n")); err != nil {
			t.Fatalf("connection %d: write: %v", i, err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 400 ") {
			t.Fatalf("connection %d: status line %q, %v; want 400", i, line, err)
		}
	}

	var got [2]float64
	eventually(t, "both processes count every connection in /metrics", func() bool {
		for i, p := range procs {
			got[i] = accepted(p) - base[i]
		}
		return got[0]+got[1] == conns
	})
	if got[0] == 0 || got[1] == 0 {
		t.Fatalf("connections per process: pid %d %v, pid %d %v; want both above 0", a.PID, got[0], b.PID, got[1])
	}
	t.Logf("connections per process: pid %d %v, pid %d %v", a.PID, got[0], b.PID, got[1])
}

func TestPortInUseRefusesToStartWithoutReusePort(t *testing.T) {
	bin := harness.BuildProxyto(t)
	for _, tc := range []struct {
		name  string
		first []string
	}{
		{"first without the flag", nil},
		{"first with the flag", []string{"--reuse-port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := harness.StartProxyto(t, tc.first...)
			ctx, cancel := context.WithTimeout(context.Background(), opsWait)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--listen", first.Addr, "--admin", harness.FreeAddr(t), "--log-format", "json")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if ctx.Err() != nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("second proxyto on %s without --reuse-port: %v (context %v); want exit code 1\n%s", first.Addr, err, ctx.Err(), out)
			}
			msg := string(out)
			for _, want := range []string{"proxyto: listen " + first.Addr, "address already in use", "--reuse-port"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error output %q does not contain %q", msg, want)
				}
			}
		})
	}
}

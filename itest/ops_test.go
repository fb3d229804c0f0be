package itest

// Operations through the real binary (docs/behaviour.md, "Operation"): /metrics parses and moves,
// the access line has every field, no credential reaches a log or a metric,
// and SIGTERM drains in-flight tunnels, turns /ready to 503 and exits 0.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/proxyto/proxyto/itest/harness"
)

// opsWait bounds every wait in this file. Nothing here asserts a duration:
// the bound only keeps a broken build from hanging the run.
const opsWait = 30 * time.Second

// eventually polls cond until it holds or opsWait passes, then fails with
// what.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(opsWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %v: %s", opsWait, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// adminGet fetches path from proxyto's admin listener.
func adminGet(t *testing.T, p *harness.Proxyto, path string) (int, string, error) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + p.AdminAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape is one parsed /metrics answer plus its raw text.
type scrape struct {
	fams map[string]*dto.MetricFamily
	raw  string
}

func scrapeMetrics(t *testing.T, p *harness.Proxyto) scrape {
	t.Helper()
	code, body, err := adminGet(t, p, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	return scrape{fams: fams, raw: body}
}

// value sums the series of name whose labels include want: counter and
// gauge values, histogram sample counts. A family that does not exist fails
// the test.
func (s scrape) value(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	f := s.fams[name]
	if f == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// noAddressLabels fails if any label value looks like a host, an address or
// userinfo (no unbounded labels, no credentials).
func (s scrape) noAddressLabels(t *testing.T) {
	t.Helper()
	for name, f := range s.fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if l.GetName() == "version" || l.GetName() == "goversion" {
					continue
				}
				if strings.Contains(v, "127.0.0.1") || strings.Contains(v, "@") || strings.Contains(v, "localhost") {
					t.Errorf("%s{%s=%q}: label holds an address", name, l.GetName(), v)
				}
			}
		}
	}
}

// accessLines returns proxyto's access log lines so far.
func accessLines(p *harness.Proxyto) []map[string]any {
	var out []map[string]any
	for _, l := range p.LogLines() {
		if l["msg"] == "access" {
			out = append(out, l)
		}
	}
	return out
}

// findAccess waits for an access line matching kind and error type.
func findAccess(t *testing.T, p *harness.Proxyto, kind, errType string) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, "an access line with kind="+kind+" error="+errType, func() bool {
		for _, l := range accessLines(p) {
			if l["kind"] == kind && l["error"] == errType {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

func TestOpsMetricsMove(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)

	before := scrapeMetrics(t, p)
	for _, name := range []string{
		"proxyto_requests_total", "proxyto_errors_total", "proxyto_client_connections",
		"proxyto_tunnels_active", "proxyto_upstream_dial_seconds", "proxyto_upstream_handshake_seconds",
		"proxyto_request_duration_seconds", "proxyto_bytes_total", "proxyto_pool_requests_total",
		"proxyto_limit_rejections_total", "proxyto_build_info", "process_open_fds", "go_goroutines",
	} {
		if before.fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	okConnect := map[string]string{"kind": "connect", "error": "none"}
	if v := before.value(t, "proxyto_requests_total", okConnect); v != 0 {
		t.Errorf("requests{connect,none} = %v before any request", v)
	}

	// A successful tunnel with credentials.
	const msg = "metrics move"
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, creds+up.Addr)
	c.EchoRoundTrip(msg)
	mid := scrapeMetrics(t, p)
	if v := mid.value(t, "proxyto_tunnels_active", nil); v != 1 {
		t.Errorf("tunnels_active = %v with one tunnel open", v)
	}
	if v := mid.value(t, "proxyto_client_connections", nil); v < 1 {
		t.Errorf("client_connections = %v with one tunnel open", v)
	}
	c.Close()

	var after scrape
	eventually(t, "requests{connect,none} counts the finished tunnel", func() bool {
		after = scrapeMetrics(t, p)
		return after.value(t, "proxyto_requests_total", okConnect) == 1
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"proxyto_bytes_total", map[string]string{"direction": "up"}, float64(len(msg))},
		{"proxyto_bytes_total", map[string]string{"direction": "down"}, float64(len(msg))},
		{"proxyto_upstream_dial_seconds", map[string]string{"result": "ok"}, 1},
		{"proxyto_upstream_handshake_seconds", map[string]string{"result": "ok"}, 1},
		{"proxyto_request_duration_seconds", map[string]string{"kind": "connect"}, 1},
	} {
		if v := after.value(t, c.name, c.labels); v < c.min {
			t.Errorf("%s%v = %v, want >= %v", c.name, c.labels, v, c.min)
		}
	}
	eventually(t, "tunnels_active back to 0", func() bool {
		return scrapeMetrics(t, p).value(t, "proxyto_tunnels_active", nil) == 0
	})

	// An error: the upstream refuses the TCP connection.
	resp := connectErr(t, p, harness.ConnectHead(echo.Addr, creds+harness.ClosedAddr(t)))
	wantProxyError(t, resp, http.StatusBadGateway, "connection_refused", 0)
	refused := map[string]string{"kind": "connect", "error": "connection_refused"}
	var last scrape
	eventually(t, "requests{connect,connection_refused} counts the refusal", func() bool {
		last = scrapeMetrics(t, p)
		return last.value(t, "proxyto_requests_total", refused) == 1
	})
	if v := last.value(t, "proxyto_errors_total", map[string]string{"type": "connection_refused"}); v != 1 {
		t.Errorf("errors{connection_refused} = %v, want 1", v)
	}
	if v := last.value(t, "proxyto_upstream_dial_seconds", map[string]string{"result": "error"}); v < 1 {
		t.Errorf("dial{error} count = %v, want >= 1", v)
	}
	last.noAddressLabels(t)
	noSecret(t, "/metrics", last.raw)
	noSecretInLogs(t, p)
}

func TestOpsAccessLine(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	p := harness.StartProxyto(t)

	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, creds+up.Addr)
	c.EchoRoundTrip("access line")
	local := c.Conn.LocalAddr().String()
	c.Close()
	resp := connectErr(t, p, harness.ConnectHead(echo.Addr, creds+harness.ClosedAddr(t)))
	wantProxyError(t, resp, http.StatusBadGateway, "connection_refused", 0)

	ok := findAccess(t, p, "connect", "none")
	fields := []string{"client", "kind", "method", "target", "upstream", "status", "bytes_in", "bytes_out", "duration", "error"}
	for _, f := range fields {
		if _, present := ok[f]; !present {
			t.Errorf("access line lacks %q: %v", f, ok)
		}
	}
	for k, want := range map[string]any{
		"client": local, "method": "CONNECT", "target": echo.Addr, "upstream": up.Addr, "status": 200.0,
	} {
		if ok[k] != want {
			t.Errorf("access line %s = %#v, want %#v", k, ok[k], want)
		}
	}
	for _, k := range []string{"bytes_in", "bytes_out"} {
		if n, _ := ok[k].(float64); n < float64(len("access line")) {
			t.Errorf("access line %s = %v, want >= %d", k, ok[k], len("access line"))
		}
	}
	if d, isNum := ok["duration"].(float64); !isNum || d < 0 {
		t.Errorf("access line duration = %#v, want a non-negative number", ok["duration"])
	}

	bad := findAccess(t, p, "connect", "connection_refused")
	for _, f := range fields {
		if _, present := bad[f]; !present {
			t.Errorf("error access line lacks %q: %v", f, bad)
		}
	}
	if bad["status"] != 502.0 {
		t.Errorf("error access line status = %v, want 502", bad["status"])
	}
	if u, _ := bad["upstream"].(string); strings.Contains(u, "@") {
		t.Errorf("error access line upstream %q holds userinfo", u)
	}
	noSecretInLogs(t, p)
}

// TestOpsNoSecrets sends credentials through every path it can (tunnel,
// refused dial, upstream 407, malformed header, plain HTTP) at debug level
// and checks stdout, stderr and /metrics.
func TestOpsNoSecrets(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	origin := harness.StartWireOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	denying := harness.StartWireUpstream(t, harness.WireUpstreamOptions{Mode: harness.Wire407})
	p := harness.StartProxyto(t, "--log-level", "debug")

	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, creds+up.Addr)
	c.EchoRoundTrip("x")
	c.Close()
	for _, head := range []string{
		harness.ConnectHead(echo.Addr, creds+harness.ClosedAddr(t)),
		harness.ConnectHead(echo.Addr, creds+denying.Addr),
		harness.ConnectHead(echo.Addr, "ftp://"+creds+up.Addr),
		harness.ConnectHead(echo.Addr, "socks5://"+creds+harness.ClosedAddr(t)),
	} {
		resp := connectErr(t, p, head)
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		noSecret(t, "response to "+firstLine(head), resp.Status+string(body))
	}
	// Plain HTTP, best effort: the answer may be anything, only leaks count.
	pc := harness.Dial(t, p.Addr)
	pc.WriteString("GET http://" + origin.Addr + "/small HTTP/1.1\r\nHost: " + origin.Addr +
		"\r\nX-Proxy-To: " + creds + up.Addr + "\r\nConnection: close\r\n\r\n")
	if resp, err := pc.ReadResponse(http.MethodGet); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		noSecret(t, "plain HTTP response", string(b))
	}

	eventually(t, "five access lines", func() bool { return len(accessLines(p)) >= 5 })
	s := scrapeMetrics(t, p)
	noSecret(t, "/metrics", s.raw)
	s.noAddressLabels(t)
	for _, l := range p.LogLines() {
		for k, v := range l {
			noSecret(t, "log field "+k, fmt.Sprint(v))
		}
	}
	noSecretInLogs(t, p)
}

// dialRefusedOr503 reports whether a new client is refused while draining:
// the connect fails, the connection is closed without an answer, or proxyto
// answers 503.
func dialRefusedOr503(t *testing.T, p *harness.Proxyto, target, xProxyTo string) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		return true // listener closed
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, harness.ConnectHead(target, xProxyTo)); err != nil {
		return true
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("new connection during drain: no answer and no close")
			return false
		}
		return true // closed or reset without an answer
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("new CONNECT during drain answered %s, want refusal or 503", resp.Status)
		return false
	}
	return true
}

func TestOpsSIGTERMDrainsTunnel(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--drain-timeout", "60s")

	if code, body, err := adminGet(t, p, "/ready"); err != nil || code != http.StatusOK {
		t.Fatalf("/ready before SIGTERM: %d %q %v", code, body, err)
	}
	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	c.EchoRoundTrip("before SIGTERM")

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/ready answers 503 while draining", func() bool {
		code, _, err := adminGet(t, p, "/ready")
		return err == nil && code == http.StatusServiceUnavailable
	})
	if code, _, err := adminGet(t, p, "/health"); err != nil || code != http.StatusOK {
		t.Errorf("/health while draining: %d %v, want 200", code, err)
	}
	if !dialRefusedOr503(t, p, echo.Addr, up.Addr) {
		t.Error("a new client was served while draining")
	}

	// The in-flight tunnel still carries bytes both ways, then ends cleanly.
	c.EchoRoundTrip("after SIGTERM")
	select {
	case <-p.Done():
		t.Fatal("proxyto exited with a tunnel still open and drain time left")
	default:
	}
	c.CloseWrite()
	if _, err := io.ReadAll(c.R); err != nil {
		t.Errorf("tunnel did not finish cleanly: %v", err)
	}
	c.Close()
	if code := p.Wait(); code != 0 {
		t.Errorf("exit code %d after drain, want 0", code)
	}
	noSecretInLogs(t, p)
}

func TestOpsDrainTimeoutStillExits(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	p := harness.StartProxyto(t, "--drain-timeout", "1s")

	c, _ := harness.Tunnel(t, p.Addr, echo.Addr, up.Addr)
	c.EchoRoundTrip("held open past the drain timeout")
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The client never closes the tunnel: proxyto must give up on it.
	if code := p.Wait(); code != 0 {
		t.Errorf("exit code %d after an expired drain, want 0", code)
	}
	c.SetDeadline(opsWait)
	if _, err := io.ReadAll(c.R); err != nil && !harness.IsReset(err) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("tunnel still open after proxyto exited")
		}
	}
}

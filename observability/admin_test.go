package observability

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	s, _ := newTestStack(t, Options{Version: "test"})
	var ready atomic.Bool
	ready.Store(true)
	if err := s.ServeAdmin("127.0.0.1:0", ready.Load, false); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.AdminAddr()

	if code, body := get(t, base+"/health"); code != 200 || body != "ok\n" {
		t.Errorf("/health = %d %q", code, body)
	}
	if code, _ := get(t, base+"/ready"); code != 200 {
		t.Errorf("/ready = %d while ready", code)
	}
	ready.Store(false)
	if code, _ := get(t, base+"/ready"); code != 503 {
		t.Errorf("/ready = %d while draining, want 503", code)
	}
	if code, _ := get(t, base+"/health"); code != 200 {
		t.Errorf("/health = %d while draining, want 200", code)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ = %d with pprof off, want 404", code)
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Errorf("/nope = %d, want 404", code)
	}
	resp, err := http.Post(base+"/health", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /health = %d, want 405", resp.StatusCode)
	}

	// /metrics parses with the text parser and reflects the observer.
	s.Observer().Done(errRecord())
	s.Observer().Relayed(-1, -1, 11, 0)
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	val := func(name string, labels map[string]string) float64 {
		f := fams[name]
		if f == nil {
			t.Fatalf("%s missing from /metrics", name)
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
		t.Fatalf("%s%v missing", name, labels)
		return 0
	}
	if v := val(mRequests, map[string]string{"kind": "connect", "error": "connection_refused"}); v != 1 {
		t.Errorf("requests{connect,connection_refused} = %v", v)
	}
	if v := val(mBytes, map[string]string{"direction": "up"}); v != 11 {
		t.Errorf("bytes{up} = %v", v)
	}
	if v := val(mReady, nil); v != 0 {
		t.Errorf("proxyto_ready = %v while draining", v)
	}
	if v := val(mBuildInfo, map[string]string{"version": "test"}); v != 1 {
		t.Errorf("build_info = %v", v)
	}
	for _, name := range []string{"process_open_fds", "process_max_fds", "process_resident_memory_bytes", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}

	if err := s.ServeAdmin("127.0.0.1:0", nil, false); err == nil {
		t.Error("second ServeAdmin succeeded")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("admin still answers after Shutdown")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestAdminPprof(t *testing.T) {
	s, _ := newTestStack(t, Options{})
	if err := s.ServeAdmin("127.0.0.1:0", nil, true); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.AdminAddr()
	if code, body := get(t, base+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ = %d", code)
	}
	if code, _ := get(t, base+"/debug/pprof/goroutine?debug=1"); code != 200 {
		t.Errorf("/debug/pprof/goroutine = %d", code)
	}
	if code, _ := get(t, base+"/ready"); code != 200 {
		t.Errorf("/ready with nil ready func = %d, want 200", code)
	}
}

func TestAdminBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, _ := newTestStack(t, Options{})
	if err := s.ServeAdmin(ln.Addr().String(), nil, false); err == nil {
		t.Fatal("ServeAdmin on a bound port succeeded")
	}
	if s.AdminAddr() != "" {
		t.Error("AdminAddr set after a failed bind")
	}
	// A failed bind leaves the Stack usable.
	if err := s.ServeAdmin("127.0.0.1:0", nil, false); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsNoCredentials drives the observer with credential-looking data
// through every field a Record has and checks /metrics never shows it.
func TestMetricsNoCredentials(t *testing.T) {
	s, _ := newTestStack(t, Options{AccessLog: true})
	if err := s.ServeAdmin("127.0.0.1:0", nil, false); err != nil {
		t.Fatal(err)
	}
	r := errRecord()
	r.Target = []byte("http://alice:s3cret@example.com/")
	r.Upstream = []byte("bob:hunter2@up:1")
	r.Detail = "x bob:hunter2@up:1"
	r.Kind = engine.KindUpgrade
	r.Error = proxystatus.HTTPRequestDenied
	s.Observer().Done(r)
	_, body := get(t, "http://"+s.AdminAddr()+"/metrics")
	for _, secret := range []string{"s3cret", "hunter2", "alice", "example.com", "up:1"} {
		if strings.Contains(body, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
	}
}

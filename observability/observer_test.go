package observability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/proxyto/proxyto/engine"
	"github.com/proxyto/proxyto/proxystatus"
)

// syncBuffer is a bytes.Buffer safe for the log syncer's flush goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestStack builds a Stack writing to a buffer; the caller reads the
// buffer after flush(s).
func newTestStack(t testing.TB, o Options) (*Stack, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	o.Output = buf
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, buf
}

func flush(t testing.TB, s *Stack) {
	t.Helper()
	if err := s.ws.Sync(); err != nil {
		t.Fatal(err)
	}
}

// lines returns the JSON log lines whose msg is msg.
func lines(t testing.TB, out, msg string) []map[string]any {
	t.Helper()
	var got []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", sc.Text(), err)
		}
		if m["msg"] == msg {
			got = append(got, m)
		}
	}
	return got
}

func errRecord() *engine.Record {
	return &engine.Record{
		Kind:     engine.KindConnect,
		Client:   netip.MustParseAddrPort("127.0.0.1:40000"),
		Method:   []byte("CONNECT"),
		Target:   []byte("example.com:443"),
		Upstream: []byte("up.example:3128"),
		Status:   502,
		BytesIn:  120,
		BytesOut: 80,
		Start:    time.Unix(1700000000, 0),
		Duration: 1500 * time.Microsecond,
		Error:    proxystatus.ConnectionRefused,
		Detail:   "upstream refused the connection",
		Route:    -1,
		User:     -1,
	}
}

func okRecord() *engine.Record {
	return &engine.Record{
		Kind:     engine.KindHTTP,
		Client:   netip.MustParseAddrPort("[::1]:5000"),
		Method:   []byte("GET"),
		Target:   []byte("http://example.com/a?b=1"),
		Upstream: []byte("10.0.0.1:3128"),
		Status:   200,
		BytesIn:  300,
		BytesOut: 4096,
		Duration: 20 * time.Millisecond,
		Route:    -1,
		User:     -1,
	}
}

func TestSeriesPreCreated(t *testing.T) {
	s, _ := newTestStack(t, Options{})
	fams, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	want := map[string]int{
		mRequests:          int(engine.NumKinds) * proxystatus.NumTypes,
		mErrors:            proxystatus.NumTypes - 1,
		mUpstreamErrors:    2 * (proxystatus.NumTypes - 1),
		mClients:           1,
		mClientsTotal:      1,
		mClientsLimit:      1,
		mTunnels:           1,
		mDial:              2,
		mHandshake:         2,
		mDuration:          int(engine.NumKinds),
		mBytes:             2,
		mPool:              2,
		mLimits:            int(engine.NumLimitReasons),
		mAccessDropped:     1,
		mBuildInfo:         1,
		mReady:             1,
		"process_open_fds": 1,
		"go_goroutines":    1,
	}
	for name, n := range want {
		f := byName[name]
		if f == nil {
			t.Errorf("%s not exported", name)
			continue
		}
		if got := len(f.GetMetric()); got != n {
			t.Errorf("%s: %d series, want %d", name, got, n)
		}
	}
	// Every label value is from a closed set: no host, port or userinfo.
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.ContainsAny(l.GetValue(), "@:/") && l.GetName() != "version" && l.GetName() != "goversion" {
					t.Errorf("%s{%s=%q}: label looks like an address", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestObserverCounters(t *testing.T) {
	s, _ := newTestStack(t, Options{})
	o := s.Observer()
	m := s.metrics

	o.ClientOpened()
	o.ClientOpened()
	o.ClientClosed()
	o.TunnelOpened()
	o.UpstreamDialed(3*time.Millisecond, proxystatus.None)
	o.UpstreamDialed(time.Second, proxystatus.ConnectionTimeout)
	o.UpstreamHandshake(5*time.Millisecond, proxystatus.None)
	o.UpstreamHandshake(5*time.Millisecond, proxystatus.DestinationUnavailable)
	o.PoolUsed(true)
	o.PoolUsed(false)
	o.PoolUsed(false)
	o.LimitRejected(engine.LimitRate)
	o.LimitRejected(engine.LimitReason(200)) // out of range: counted as draining
	o.Relayed(-1, -1, 100, 0)
	o.Relayed(-1, -1, 5, 7)
	o.Relayed(-1, -1, 0, 0)
	o.Done(errRecord())
	o.Done(okRecord())
	o.Done(&engine.Record{Kind: 9, Error: 250}) // out of range: clamped

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"clients", testutil.ToFloat64(m.clients), 1},
		{"clients_total", testutil.ToFloat64(m.clientsTotal), 2},
		{"tunnels", testutil.ToFloat64(m.tunnels), 1},
		{"pool hit", testutil.ToFloat64(m.poolHit), 1},
		{"pool miss", testutil.ToFloat64(m.poolMiss), 2},
		{"limit rate", testutil.ToFloat64(m.limits[engine.LimitRate]), 1},
		{"limit draining", testutil.ToFloat64(m.limits[engine.LimitDraining]), 1},
		{"bytes up", testutil.ToFloat64(m.bytesUp), 105},
		{"bytes down", testutil.ToFloat64(m.bytesDown), 7},
		{"connect refused", testutil.ToFloat64(m.requests[engine.KindConnect][proxystatus.ConnectionRefused]), 1},
		{"http none", testutil.ToFloat64(m.requests[engine.KindHTTP][proxystatus.None]), 1},
		{"http internal", testutil.ToFloat64(m.requests[engine.KindHTTP][proxystatus.ProxyInternalError]), 1},
		{"errors refused", testutil.ToFloat64(m.errors[proxystatus.ConnectionRefused]), 1},
		{"errors internal", testutil.ToFloat64(m.errors[proxystatus.ProxyInternalError]), 1},
		{"dial timeout", testutil.ToFloat64(m.upstreamErrors[stageDial][proxystatus.ConnectionTimeout]), 1},
		{"handshake unavailable", testutil.ToFloat64(m.upstreamErrors[stageHandshake][proxystatus.DestinationUnavailable]), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Histograms: one observation per result / kind.
	fams, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, f := range fams {
		if f.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, mm := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mm.GetLabel() {
				key += "," + l.GetValue()
			}
			counts[key] = mm.GetHistogram().GetSampleCount()
		}
	}
	for key, want := range map[string]uint64{
		mDial + ",ok": 1, mDial + ",error": 1,
		mHandshake + ",ok": 1, mHandshake + ",error": 1,
		mDuration + ",connect": 1, mDuration + ",http": 2, mDuration + ",upgrade": 0,
	} {
		if counts[key] != want {
			t.Errorf("%s count = %d, want %d", key, counts[key], want)
		}
	}
}

func TestAccessLineFields(t *testing.T) {
	s, buf := newTestStack(t, Options{AccessLog: true})
	s.Observer().Done(errRecord())
	s.Observer().Done(okRecord())
	flush(t, s)
	got := lines(t, buf.String(), "access")
	if len(got) != 2 {
		t.Fatalf("got %d access lines, want 2:\n%s", len(got), buf.String())
	}

	// The error line has exactly the documented fields and nothing else
	// (no route or user: it had neither).
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		sort.Strings(k)
		return k
	}
	want := append([]string{"level", "msg", "ts"}, accessFields...)
	want = slices.DeleteFunc(want, func(s string) bool { return s == "route" || s == "user" })
	sort.Strings(want)
	if k := keys(got[0]); !slices.Equal(k, want) {
		t.Errorf("error line fields = %v, want %v", k, want)
	}
	e := got[0]
	for k, v := range map[string]any{
		"level": "info", "client": "127.0.0.1:40000", "kind": "connect", "method": "CONNECT",
		"target": "example.com:443", "upstream": "up.example:3128", "status": 502.0,
		"bytes_in": 120.0, "bytes_out": 80.0, "duration": 1.5,
		"error": "connection_refused", "detail": "upstream refused the connection",
	} {
		if e[k] != v {
			t.Errorf("error line %s = %#v, want %#v", k, e[k], v)
		}
	}

	// The success line: error "none", no detail.
	okWant := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "detail" })
	if k := keys(got[1]); !slices.Equal(k, okWant) {
		t.Errorf("ok line fields = %v, want %v", k, okWant)
	}
	if got[1]["error"] != "none" || got[1]["client"] != "[::1]:5000" || got[1]["duration"] != 20.0 {
		t.Errorf("ok line = %v", got[1])
	}
}

func TestAccessLineConsole(t *testing.T) {
	s, buf := newTestStack(t, Options{AccessLog: true, LogFormat: "console", LogLevel: "debug"})
	s.Observer().Done(errRecord())
	flush(t, s)
	out := buf.String()
	for _, w := range []string{"access", "connection_refused", "example.com:443", "127.0.0.1:40000"} {
		if !strings.Contains(out, w) {
			t.Errorf("console line lacks %q: %s", w, out)
		}
	}
}

func TestAccessNoCredentials(t *testing.T) {
	s, buf := newTestStack(t, Options{AccessLog: true, LogLevel: "debug"})
	r := okRecord()
	r.Target = []byte("http://alice:s3cret@example.com/p?q=1")
	r.Upstream = []byte("bob:hunter2@up.example:3128") // the engine never does this; guard anyway
	r.Error = proxystatus.HTTPRequestDenied
	r.Detail = "upstream socks5://carol:pa55w0rd@up.example:1080 answered 407"
	s.Observer().Done(r)
	s.Logger().Debug("debug line", Str("k", "v"))
	flush(t, s)
	out := buf.String()
	for _, secret := range []string{"s3cret", "hunter2", "pa55w0rd", "alice", "bob:", "carol"} {
		if strings.Contains(out, secret) {
			t.Errorf("log output contains %q:\n%s", secret, out)
		}
	}
	l := lines(t, out, "access")
	if len(l) != 1 {
		t.Fatalf("got %d access lines", len(l))
	}
	for k, v := range map[string]string{
		"target":   "http://***@example.com/p?q=1",
		"upstream": "up.example:3128",
		"detail":   "upstream socks5://***@up.example:1080 answered 407",
	} {
		if l[0][k] != v {
			t.Errorf("%s = %q, want %q", k, l[0][k], v)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"example.com:443", "example.com:443"},
		{"http://example.com/a@b", "http://example.com/a@b"},
		{"http://u:p@h/", "http://***@h/"},
		{"http://u:p@h", "http://***@h"},
		{"http://u:p@x@h?y", "http://***@h?y"},
		{"/a@b", "/a@b"},
	} {
		if got := string(redactTarget([]byte(c.in))); got != c.want {
			t.Errorf("redactTarget(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"no at sign", "no at sign"},
		{"u:p@h", "***@h"},
		{"x @h", "x @h"},
		{"a=u:p@h, b=(v@w)", "a=***@h, b=(***@w)"},
	} {
		if got := redactDetail(c.in); got != c.want {
			t.Errorf("redactDetail(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestAccessLogSwitches(t *testing.T) {
	for _, c := range []struct {
		name string
		o    Options
		want int
	}{
		{"off", Options{AccessLog: false}, 0},
		{"on", Options{AccessLog: true}, 50},
		{"sample 1", Options{AccessLog: true, AccessLogSample: 1}, 50},
		{"level warn", Options{AccessLog: true, LogLevel: "warn"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, buf := newTestStack(t, c.o)
			for range 50 {
				s.Observer().Done(okRecord())
			}
			flush(t, s)
			if n := len(lines(t, buf.String(), "access")); n != c.want {
				t.Errorf("%d access lines, want %d", n, c.want)
			}
			if n := testutil.ToFloat64(s.metrics.requests[engine.KindHTTP][proxystatus.None]); n != 50 {
				t.Errorf("requests counter = %v, want 50 whatever the access log does", n)
			}
		})
	}
}

func TestAccessLogSampling(t *testing.T) {
	const n = 8000
	s, buf := newTestStack(t, Options{AccessLog: true, AccessLogSample: 0.25})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range n / 4 {
				s.Observer().Done(okRecord())
			}
		})
	}
	wg.Wait()
	flush(t, s)
	kept := len(lines(t, buf.String(), "access"))
	// Binomial(8000, 0.25): mean 2000, sd ≈ 39; ±400 is over 10 sd.
	if kept < 1600 || kept > 2400 {
		t.Errorf("kept %d of %d lines at 0.25", kept, n)
	}
	if d := testutil.ToFloat64(s.metrics.accessDropped); int(d) != n-kept {
		t.Errorf("sampled_out = %v, want %d", d, n-kept)
	}
}

func TestNewOptions(t *testing.T) {
	for _, o := range []Options{
		{LogFormat: "xml"},
		{LogLevel: "loud"},
		{AccessLogSample: -0.5},
		{AccessLogSample: 1.5},
	} {
		if s, err := New(o); err == nil {
			s.Close()
			t.Errorf("New(%+v) succeeded, want error", o)
		}
	}
	s, err := New(Options{LogFormat: "JSON", LogLevel: "DEBUG", Version: "v1.2.3", MaxConns: 100, Output: &syncBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := testutil.GatherAndCount(s.Registry(), mBuildInfo)
	if err != nil || n != 1 {
		t.Fatalf("build info: %d series, %v", n, err)
	}
	fams, _ := s.Registry().Gather()
	for _, f := range fams {
		switch f.GetName() {
		case mBuildInfo:
			if v := f.GetMetric()[0].GetLabel(); !slices.ContainsFunc(v, func(l *dto.LabelPair) bool { return l.GetValue() == "v1.2.3" }) {
				t.Errorf("build info labels = %v", v)
			}
		case mClientsLimit:
			if v := f.GetMetric()[0].GetGauge().GetValue(); v != 100 {
				t.Errorf("limit = %v", v)
			}
		}
	}
}

func TestConcurrentObserver(t *testing.T) {
	s, _ := newTestStack(t, Options{AccessLog: true, Output: nil})
	o := s.Observer()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				o.ClientOpened()
				o.Relayed(-1, -1, 10, 20)
				o.Done(okRecord())
				o.ClientClosed()
			}
		})
	}
	wg.Wait()
	if v := testutil.ToFloat64(s.metrics.clients); v != 0 {
		t.Errorf("clients = %v", v)
	}
	if v := testutil.ToFloat64(s.metrics.bytesDown); v != 8*500*20 {
		t.Errorf("bytes down = %v", v)
	}
}

// Package observability builds proxyto's logger, metrics and admin listener,
// and holds the Grafana dashboard and Prometheus alerting rules that go with
// them.
//
// It is the only package besides cmd that imports zap, client_golang and
// net/http (internal/deptest enforces this). The engine reaches it through
// the engine.Observer interface only:
//
//	cmd/proxyto run
//	├── observability.New(Options)       logger + registry + observer
//	├── engine.Config.Observer = Stack.Observer()
//	│     ClientOpened … Done(*Record)    on event loops: atomics only, plus
//	│                                     one buffered access line per record
//	├── Stack.ServeAdmin(addr, ready, pprof)
//	│     /health /ready /metrics [/debug/pprof/]   own goroutines
//	└── Stack.Close()                     stop admin, flush logs
//
// Dashboards and alerts: grafana-dashboard.json and alerts.yml in this
// directory, checked against the exported metric names by the tests here and
// by the promlint module below it.
package observability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyto/proxyto/engine"
)

// Options configures New. The zero value is usable: JSON logs at info level to
// stdout, no access log, no connection-limit gauge value.
type Options struct {
	// LogFormat is "json" (default when empty) or "console".
	LogFormat string
	// LogLevel is "debug", "info" (default when empty), "warn" or "error".
	// Access lines are written at info, so "warn" and "error" drop them.
	LogLevel string
	// AccessLog turns on one access line per request or tunnel. Default false
	// in the zero value; cmd sets it true unless --no-access-log.
	AccessLog bool
	// AccessLogSample is the fraction of access lines written, in (0,1].
	// 0 means 1 (every line). Sampling never affects metrics.
	AccessLogSample float64
	// NoRequestMetrics stops the engine's per-request and per-connection
	// metrics (process and Go runtime metrics stay). With AccessLog off too,
	// Observer returns nil and the engine reports nothing: the baseline for
	// measuring what observability costs.
	NoRequestMetrics bool
	// Version is exported as proxyto_build_info{version}. Empty means "dev".
	Version string
	// MaxConns is the engine's overall connection cap, exported as
	// proxyto_client_connections_limit for saturation alerts; 0 means no cap.
	MaxConns int
	// Output receives log lines; nil means os.Stdout. It is wrapped in a
	// buffered syncer flushed every FlushInterval and on Close.
	Output io.Writer
	// FlushInterval bounds how long a log line waits in the buffer; 0 means
	// one second.
	FlushInterval time.Duration
	// Accounting, when set, adds the per-route and per-user counters, the
	// route health, DNS cache and reload metrics (NewAccounting), and the
	// route and user names of access lines. nil: none of them.
	Accounting *AccountingOptions
}

// Stack is the process logger, the engine observer and the admin listener.
// Its methods are safe for concurrent use.
type Stack struct {
	log     *zap.Logger
	ws      *asyncWriter
	reg     *prometheus.Registry
	metrics *metrics
	tls     *tlsMetrics
	obs     engine.Observer
	acct    *Accounting // nil without Options.Accounting

	mu    sync.Mutex
	admin *adminServer // nil until ServeAdmin
}

// New builds the logger and the metrics registry. It returns an error for an
// unknown log format or level or a sample fraction outside (0,1].
func New(o Options) (*Stack, error) {
	sample := o.AccessLogSample
	if sample == 0 {
		sample = 1
	}
	if math.IsNaN(sample) || sample < 0 || sample > 1 {
		return nil, fmt.Errorf("observability: access log sample %v is outside (0,1]", o.AccessLogSample)
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	log, ws, err := newLogger(o)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, o.Version, o.MaxConns)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "proxyto_log_lines_dropped_total",
		Help: "Log lines dropped because more than 8 MiB were waiting to be written (a stalled stdout).",
	}, func() float64 { return float64(ws.dropped.Load()) }))
	s := &Stack{
		log:     log,
		ws:      ws,
		reg:     reg,
		metrics: m,
		tls:     newTLSMetrics(reg),
	}
	obs := newObserver(m, log, o.AccessLog, sample)
	if o.Accounting != nil {
		s.acct = NewAccounting(reg, *o.Accounting)
		obs.acct = s.acct
	}
	if f := strings.ToLower(o.LogFormat); f == "" || f == "json" {
		obs.fastJSON = ws // JSON access lines skip zap's encoder (accessjson.go)
	}
	switch {
	case !o.NoRequestMetrics:
		s.obs = obs
	case o.AccessLog:
		s.obs = logOnly{obs}
	}
	return s, nil
}

// Logger returns the process logger. It is never nil.
func (s *Stack) Logger() *zap.Logger { return s.log }

// Observer returns the engine observer: safe for concurrent use from every
// event loop, non-blocking, and allocation-free except when it writes an
// access line.
func (s *Stack) Observer() engine.Observer { return s.obs }

// Accounting returns the per-route and per-user accounting (for
// ConfigReloaded), or nil without Options.Accounting.
func (s *Stack) Accounting() *Accounting { return s.acct }

// Registry returns the Prometheus registry behind /metrics, for tests and for
// callers that add their own collectors.
func (s *Stack) Registry() *prometheus.Registry { return s.reg }

// ServeAdmin binds addr synchronously, so that a bind error is returned, then
// serves /health, /ready, /metrics and, when pprof is true, /debug/pprof/ in
// its own goroutine. ready reports whether the engine accepts work; nil means
// always ready. It may be called once.
func (s *Stack) ServeAdmin(addr string, ready func() bool, pprof bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin != nil {
		return errors.New("observability: admin listener already started")
	}
	if ready == nil {
		ready = func() bool { return true }
	}
	a, err := startAdmin(addr, s.reg, ready, pprof, s.log)
	if err != nil {
		return err
	}
	s.metrics.setReady(ready)
	s.admin = a
	return nil
}

// AdminAddr is the bound admin address ("" before ServeAdmin), useful when
// addr had port 0.
func (s *Stack) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return ""
	}
	return s.admin.ln.Addr().String()
}

// Shutdown stops the admin listener gracefully, waiting for in-flight admin
// requests until ctx ends. It is a no-op without ServeAdmin and safe to call
// more than once.
func (s *Stack) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	a := s.admin
	s.mu.Unlock()
	if a == nil {
		return nil
	}
	err := a.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops the admin listener (allowing it one second), then flushes and
// stops the log buffer. Call it last: lines logged after Close may be lost.
// It is safe to call more than once.
func (s *Stack) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if err := s.Shutdown(ctx); err != nil {
		s.mu.Lock()
		_ = s.admin.srv.Close()
		s.mu.Unlock()
	}
	cancel()
	_ = s.log.Sync()
	_ = s.ws.Stop()
}

// Str, Dur, Err, Int, Bool and Strs are zap field helpers so cmd need not
// import zap.
func Str(k, v string) zap.Field { return zap.String(k, v) }

// Dur is a duration field written with its unit, as Go prints durations
// ("30s", "1m30s", "1.5ms"), in JSON and console logs alike: a bare number
// ("drain_timeout": 30000) leaves the reader to guess the unit. Access
// lines keep their own "duration" in fractional milliseconds.
func Dur(k string, v time.Duration) zap.Field { return zap.Stringer(k, v) }

// Err is the "error" field for err.
func Err(err error) zap.Field { return zap.Error(err) }

// Int is an integer field.
func Int(k string, v int) zap.Field { return zap.Int(k, v) }

// Bool is a boolean field.
func Bool(k string, v bool) zap.Field { return zap.Bool(k, v) }

// Strs is a list of strings field.
func Strs(k string, v []string) zap.Field { return zap.Strings(k, v) }

// newLogger builds the zap logger over a buffered syncer on o.Output.
func newLogger(o Options) (*zap.Logger, *asyncWriter, error) {
	level := zapcore.InfoLevel
	if o.LogLevel != "" {
		l, err := zapcore.ParseLevel(strings.ToLower(o.LogLevel))
		if err != nil {
			return nil, nil, fmt.Errorf("observability: log level %q: %w", o.LogLevel, err)
		}
		level = l
	}
	var enc zapcore.Encoder
	switch strings.ToLower(o.LogFormat) {
	case "", "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.TimeKey = "ts"
		cfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		cfg.EncodeDuration = floatMillis
		enc = zapcore.NewJSONEncoder(cfg)
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.RFC3339TimeEncoder
		cfg.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return nil, nil, fmt.Errorf("observability: log format %q: want json or console", o.LogFormat)
	}
	out := o.Output
	if out == nil {
		out = os.Stdout
	}
	flush := o.FlushInterval
	if flush <= 0 {
		flush = time.Second
	}
	ws := newAsyncWriter(out, flush, 8<<20)
	core := zapcore.NewCore(enc, ws, level)
	log := zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(os.Stderr))))
	return log, ws, nil
}

// floatMillis encodes a duration as fractional milliseconds (1.5 for 1.5ms),
// the unit of every duration in JSON logs.
func floatMillis(d time.Duration, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendFloat64(float64(d) / float64(time.Millisecond))
}

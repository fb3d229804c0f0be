// Package observability builds proxyto's logger, metrics and admin server.
// PROVISIONAL: minimal version so the tree builds; replaced by the operations work.
package observability

import (
	"time"

	"go.uber.org/zap"

	"github.com/proxyto/proxyto/engine"
)

// Options configures New.
type Options struct {
	LogFormat       string
	LogLevel        string
	AccessLog       bool
	AccessLogSample float64
	Version         string
}

// Stack is the logger, the engine observer and the admin server.
type Stack struct{ log *zap.Logger }

// New builds a Stack.
func New(o Options) (*Stack, error) {
	l, err := zap.NewProduction()
	if err != nil {
		return nil, err
	}
	return &Stack{log: l}, nil
}

// Logger returns the process logger.
func (s *Stack) Logger() *zap.Logger { return s.log }

// Observer returns the engine observer.
func (s *Stack) Observer() engine.Observer { return nil }

// ServeAdmin starts the admin server on addr.
func (s *Stack) ServeAdmin(addr string, ready func() bool, pprof bool) error { return nil }

// Close flushes logs.
func (s *Stack) Close() { _ = s.log.Sync() }

// Str, Dur and Err are zap field helpers so cmd need not import zap.
func Str(k, v string) zap.Field               { return zap.String(k, v) }
func Dur(k string, v time.Duration) zap.Field { return zap.Duration(k, v) }
func Err(err error) zap.Field                 { return zap.Error(err) }

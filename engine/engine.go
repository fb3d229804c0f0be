package engine

import (
	"context"
	"errors"
)

// Engine is the gateway: a gnet engine plus its dialers and timers.
type Engine struct {
	cfg  Config
	done chan error
}

// New validates cfg and returns an Engine that is not yet listening.
func New(cfg Config) (*Engine, error) {
	return &Engine{cfg: cfg.withDefaults(), done: make(chan error, 1)}, nil
}

// Start begins listening and returns once the listener is bound.
func (e *Engine) Start() error { return errors.New("proxyto: engine not built yet") }

// Addr is the bound client listener address.
func (e *Engine) Addr() string { return e.cfg.Listen }

// Ready reports whether the engine accepts new work (false while draining).
func (e *Engine) Ready() bool { return false }

// Done yields the engine's terminal error if it stops by itself.
func (e *Engine) Done() <-chan error { return e.done }

// Shutdown stops accepting, lets in-flight work finish until ctx ends, then stops.
func (e *Engine) Shutdown(ctx context.Context) error { return nil }

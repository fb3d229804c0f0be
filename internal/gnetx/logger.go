package gnetx

import "strings"

// Logger passes gnet's warnings and errors to Logf and drops its debug and
// info lines, so gnet never writes through its own global logger. Fatalf is
// logged as an error and does not exit: gnet calls it only where the kqueue
// poller cannot create its wake-up pipe (pkg/netpoll/poller_kqueue_wakeup1.go),
// never on Linux, and a library must not end the process.
type Logger struct {
	// Logf receives "gnet: ..." lines; nil discards them.
	Logf func(format string, args ...any)
}

// Debugf drops gnet's debug lines.
func (Logger) Debugf(string, ...any) {}

// Infof drops gnet's info lines (engine start and stop, which proxyto logs itself).
func (Logger) Infof(string, ...any) {}

// Warnf logs a gnet warning, except the "stale connection" one: gnet logs
// it for an event it took from epoll in the same round in which the
// connection was closed (a write that failed closes it at once, inside
// another connection's callback), which is expected with a relay writing
// to a peer that reset (reactor_default.go:53-62).
func (l Logger) Warnf(f string, a ...any) {
	if strings.HasPrefix(f, "received event[") {
		return
	}
	l.logf(f, a...)
}

// Errorf logs a gnet error.
func (l Logger) Errorf(f string, a ...any) { l.logf(f, a...) }

// Fatalf logs like Errorf; see the type doc for why it does not exit.
func (l Logger) Fatalf(f string, a ...any) { l.logf(f, a...) }

func (l Logger) logf(f string, a ...any) {
	if l.Logf != nil {
		l.Logf("gnet: "+f, a...)
	}
}

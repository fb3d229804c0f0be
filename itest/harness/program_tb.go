package harness

import (
	"fmt"
	"os"
	"sync"
)

// ProgramTB is the TB of a program that is not a test (the soak, the
// scripts' testupstream): Fatal runs the cleanups (which stop proxyto and the
// servers) and exits; Errorf marks the run failed, so that proxyto's stop
// prints the tail of its output. The zero value logs without a prefix.
type ProgramTB struct {
	// Name prefixes every log line ("soak: ...").
	Name string

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// Helper does nothing: a program has no test frames to skip.
func (t *ProgramTB) Helper() {}

// Cleanup registers f to run at Close, last registered first.
func (t *ProgramTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

// Logf writes a line to stderr.
func (t *ProgramTB) Logf(format string, args ...any) {
	if t.Name != "" {
		format = t.Name + ": " + format
	}
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// Errorf logs and marks the run failed.
func (t *ProgramTB) Errorf(format string, args ...any) {
	t.Logf(format, args...)
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

// Fatalf logs, marks the run failed and exits with code 2 after the cleanups.
func (t *ProgramTB) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	t.Exit(2)
}

// Fatal is Fatalf with Sprint's formatting.
func (t *ProgramTB) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }

// Skip is fatal: a program has no optional parts.
func (t *ProgramTB) Skip(args ...any) { t.Fatal(args...) }

// Failed reports whether Errorf or Fatalf was called.
func (t *ProgramTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// TempDir makes a directory removed at Close.
func (t *ProgramTB) TempDir() string {
	dir, err := os.MkdirTemp("", "proxyto-"+t.Name+"-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Close runs the cleanups, last registered first.
func (t *ProgramTB) Close() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Exit runs the cleanups and exits with code.
func (t *ProgramTB) Exit(code int) {
	t.Close()
	os.Exit(code)
}

package main

import (
	"fmt"
	"os"
	"sync"
)

// soakTB is the harness.TB of a program that is not a test: Fatal runs the
// cleanups (which stop proxyto and the servers) and exits; Errorf marks the
// run failed, so that proxyto's stop prints the tail of its output.
type soakTB struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

func (t *soakTB) Helper() {}

func (t *soakTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

func (t *soakTB) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...)
}

func (t *soakTB) Errorf(format string, args ...any) {
	t.Logf(format, args...)
	t.fail()
}

func (t *soakTB) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	t.exit(2)
}

func (t *soakTB) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }

// Skip is fatal: the soak has no optional parts.
func (t *soakTB) Skip(args ...any) { t.Fatal(args...) }

func (t *soakTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *soakTB) fail() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

func (t *soakTB) TempDir() string {
	dir, err := os.MkdirTemp("", "proxyto-soak-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// close runs the cleanups, last registered first.
func (t *soakTB) close() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// exit runs the cleanups and exits with code.
func (t *soakTB) exit(code int) {
	t.close()
	os.Exit(code)
}

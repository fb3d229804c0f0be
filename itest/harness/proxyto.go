package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment knobs:
//
//	PROXYTO_BIN=/path/to/proxyto   test this binary instead of building ./cmd/proxyto
//	PROXYTO_ITEST_RACE=1           build proxyto with -race (RSS bounds then do not hold)
const (
	envBin  = "PROXYTO_BIN"
	envRace = "PROXYTO_ITEST_RACE"
)

var build struct {
	once sync.Once
	dir  string // temp dir holding the binary; removed by Main
	bin  string
	err  error
}

// Main is the TestMain body for packages that run proxyto: it runs the tests,
// then removes the binary BuildProxyto built.
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	RemoveBuild()
	os.Exit(code)
}

// RemoveBuild removes the binary BuildProxyto built, if any. Programs that
// are not tests call it before they exit; tests get it from Main.
func RemoveBuild() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// ModuleRoot returns the directory holding proxyto's go.mod, found by walking
// up from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/proxyto/proxyto\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: go.mod of github.com/proxyto/proxyto not found above the working directory")
		}
		dir = parent
	}
}

// BuildProxyto builds ./cmd/proxyto once per test binary (go build into a temp
// dir) and returns the binary's path. With PROXYTO_BIN set it returns that
// instead. A failed build fails every test that needs the binary, each with
// the compiler's output.
func BuildProxyto(t TB) string {
	t.Helper()
	build.once.Do(func() {
		if bin := os.Getenv(envBin); bin != "" {
			build.bin, build.err = filepath.Abs(bin)
			return
		}
		root, err := ModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "proxyto-itest-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.dir = dir
		bin := filepath.Join(dir, "proxyto")
		args := []string{"build", "-o", bin}
		if os.Getenv(envRace) == "1" {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/proxyto")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		build.bin = bin
	})
	if build.err != nil {
		t.Fatalf("harness: building proxyto: %v", build.err)
	}
	return build.bin
}

// Proxyto is a running proxyto process. Its methods are safe for concurrent
// use.
type Proxyto struct {
	// Addr is the client listener, "127.0.0.1:P".
	Addr string
	// AdminAddr is the admin listener, "127.0.0.1:A"; empty when the test
	// passed --admin "" itself.
	AdminAddr string
	// TLSAddr is the TLS client listener when the test passed --tls-listen
	// (with a port: StartProxyto waits for it).
	TLSAddr string
	// PID is the process id.
	PID int

	t    TB
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited
	code int           // exit code, valid once done is closed
}

// StartProxyto runs the built proxyto with
// `--listen 127.0.0.1:P --admin 127.0.0.1:A --log-format json` followed by
// extraFlags, and returns once its listeners accept connections (the TLS
// listener too, when extraFlags give --tls-listen). Passing --listen or
// --admin in extraFlags replaces the default address (a second process
// joining a port with --reuse-port; --listen "" for no plain listener). stdout and stderr
// are captured (Output). The process is killed in t.Cleanup; if the test
// failed, the tail of its output is logged.
func StartProxyto(t TB, extraFlags ...string) *Proxyto {
	t.Helper()
	return StartProxytoLimited(t, 0, extraFlags...)
}

// StartProxytoLimited is StartProxyto with the process's descriptor limit
// (RLIMIT_NOFILE, soft and hard) set to nofile by prlimit(1); 0 leaves it.
func StartProxytoLimited(t TB, nofile int, extraFlags ...string) *Proxyto {
	t.Helper()
	bin := BuildProxyto(t)
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		p, err := startProxyto(t, bin, nofile, extraFlags)
		if err == nil {
			return p
		}
		lastErr = err.Error()
		if !strings.Contains(lastErr, "address already in use") {
			break
		}
	}
	t.Fatalf("harness: proxyto did not start: %s", lastErr)
	return nil
}

func startProxyto(t TB, bin string, nofile int, extra []string) (*Proxyto, error) {
	p := &Proxyto{t: t, out: &syncBuffer{}, done: make(chan struct{})}
	var args []string
	listenGiven, adminGiven := false, false
	for i, f := range extra {
		switch {
		case f == "--listen" && i+1 < len(extra):
			listenGiven, p.Addr = true, extra[i+1]
		case strings.HasPrefix(f, "--listen="):
			listenGiven, p.Addr = true, strings.TrimPrefix(f, "--listen=")
		case f == "--admin" && i+1 < len(extra):
			adminGiven, p.AdminAddr = true, extra[i+1]
		case strings.HasPrefix(f, "--admin="):
			adminGiven, p.AdminAddr = true, strings.TrimPrefix(f, "--admin=")
		case f == "--tls-listen" && i+1 < len(extra):
			p.TLSAddr = extra[i+1]
		case strings.HasPrefix(f, "--tls-listen="):
			p.TLSAddr = strings.TrimPrefix(f, "--tls-listen=")
		}
	}
	if !listenGiven {
		p.Addr = FreeAddr(t)
		args = append(args, "--listen", p.Addr)
	}
	if !adminGiven {
		p.AdminAddr = FreeAddr(t)
		args = append(args, "--admin", p.AdminAddr)
	}
	args = append(args, "--log-format", "json")
	args = append(args, extra...)

	if nofile > 0 {
		// prlimit sets the limit, then execs proxyto: same process.
		args = append([]string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--", bin}, args...)
		bin = "prlimit"
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", bin, err)
	}
	p.PID = p.cmd.Process.Pid
	go func() {
		err := p.cmd.Wait()
		p.code = exitCode(err)
		close(p.done)
	}()
	t.Cleanup(p.stop)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, addr := range []string{p.Addr, p.AdminAddr, p.TLSAddr} {
		if addr == "" {
			continue
		}
		if err := waitListening(ctx, addr, p.done); err != nil {
			p.stop()
			return nil, fmt.Errorf("%s %s: waiting for %s: %v (exit code %d)\n--- proxyto output ---\n%s",
				bin, strings.Join(args, " "), addr, err, p.exitCodeIfDone(), p.out.String())
		}
	}
	return p, nil
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

func (p *Proxyto) exitCodeIfDone() int {
	select {
	case <-p.done:
		return p.code
	default:
		return -1
	}
}

// stop kills the process by PID if it still runs and waits for it.
func (p *Proxyto) stop() {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.t.Errorf("harness: proxyto pid %d did not exit after SIGKILL", p.PID)
		}
	}
	if p.t.Failed() {
		out := p.out.String()
		if len(out) > 16<<10 {
			out = "…" + out[len(out)-16<<10:]
		}
		p.t.Logf("--- proxyto (pid %d) output ---\n%s", p.PID, out)
	}
}

// Output returns everything the process wrote to stdout and stderr so far.
func (p *Proxyto) Output() string { return p.out.String() }

// LogLines returns the JSON objects among the output lines, in order; lines
// that are not JSON objects are skipped.
func (p *Proxyto) LogLines() []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

// RSS returns the process's resident set size in bytes (VmRSS of
// /proc/PID/status).
func (p *Proxyto) RSS() (int64, error) { return RSSOf(p.PID) }

// MustRSS is RSS that fails the test on error.
func (p *Proxyto) MustRSS(t TB) int64 {
	t.Helper()
	n, err := p.RSS()
	if err != nil {
		t.Fatalf("harness: reading RSS of proxyto: %v", err)
	}
	return n
}

// RSSOf returns the VmRSS of process pid in bytes.
func RSSOf(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS line in /proc/%d/status", pid)
}

// Signal sends sig to the process.
func (p *Proxyto) Signal(sig syscall.Signal) error { return syscall.Kill(p.PID, sig) }

// Done is closed when the process has exited.
func (p *Proxyto) Done() <-chan struct{} { return p.done }

// Wait waits (at most 2 minutes, then fails the test) for the process to exit
// and returns its exit code; 128+N when killed by signal N.
func (p *Proxyto) Wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(2 * time.Minute):
		p.t.Fatalf("harness: proxyto pid %d still running after 2m", p.PID)
		return -1
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

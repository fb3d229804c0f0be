package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process groups, for CPU accounting.
const (
	groupProxyto  = "proxyto"
	groupUpstream = "upstream"
	groupOrigin   = "origin"
	groupLoadgen  = "loadgen"
)

// proc is a child process: one of this program's roles (talking JSON lines
// on stdin/stdout) or proxyto.
type proc struct {
	group, name string
	cmd         *exec.Cmd
	pid         int
	done        chan struct{} // closed once the process has exited
	out         *tail         // stderr (and proxyto's stdout): the last lines, for errors

	stdin io.WriteCloser
	lines chan []byte // role: stdout lines
	mu    sync.Mutex  // one request at a time

	listen, admin string // proxyto

	lastCPU float64 // CPU seconds when last sampled, kept after it exits
}

// procs is every child started, so that any exit path can stop them.
// Safe for concurrent use.
var procs struct {
	mu  sync.Mutex
	all []*proc
}

func register(p *proc) {
	procs.mu.Lock()
	procs.all = append(procs.all, p)
	procs.mu.Unlock()
}

// killAll sends SIGKILL to every child still running and waits (briefly)
// for each. It is the last resort of every exit path.
func killAll() {
	procs.mu.Lock()
	all := append([]*proc(nil), procs.all...)
	procs.mu.Unlock()
	for _, p := range all {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	for _, p := range all {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// sysProcAttr puts a child in its own process group, so the terminal's
// Ctrl-C reaches only the coordinator (which stops the children in order),
// and has the kernel kill it if the coordinator dies without doing so.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// startRole starts this program again as role with spec and waits for its
// ready line.
func startRole(ctx context.Context, group string, idx int, spec any) (*proc, reply, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, reply{}, err
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, reply{}, err
	}
	p := &proc{group: group, name: fmt.Sprintf("%s-%d", group, idx), out: newTail(), done: make(chan struct{}), lines: make(chan []byte, 1)}
	p.cmd = exec.Command(self, "-role", group, "-spec", string(js))
	p.cmd.SysProcAttr = sysProcAttr()
	// The test's own processes hold tens of thousands of goroutines whose
	// stacks every GC cycle scans: trade some of the plentiful memory for
	// the scarce CPU, unless the caller chose.
	if os.Getenv("GOGC") == "" {
		p.cmd.Env = append(os.Environ(), "GOGC=400")
	}
	p.cmd.Stderr = p.out
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, reply{}, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, reply{}, err
	}
	if err := p.start(); err != nil {
		return nil, reply{}, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			p.lines <- bytes.Clone(sc.Bytes())
		}
		close(p.lines)
	}()
	var r reply
	if err := p.receive(ctx, &r, 30*time.Second); err != nil {
		return p, r, err
	}
	if r.Err != "" {
		return p, r, fmt.Errorf("%s: %s", p.name, r.Err)
	}
	return p, r, nil
}

func (p *proc) start() error {
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.pid = p.cmd.Process.Pid
	register(p)
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return nil
}

// call sends r to a role process and waits up to timeout for its reply.
func (p *proc) call(ctx context.Context, r request, timeout time.Duration) (reply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	js, err := json.Marshal(r)
	if err != nil {
		return reply{}, err
	}
	if _, err := p.stdin.Write(append(js, '\n')); err != nil {
		return reply{}, fmt.Errorf("%s (pid %d): %w%s", p.name, p.pid, err, p.out.report())
	}
	var out reply
	if err := p.receive(ctx, &out, timeout); err != nil {
		return out, err
	}
	if out.Err != "" {
		return out, fmt.Errorf("%s: %s", p.name, out.Err)
	}
	return out, nil
}

func (p *proc) receive(ctx context.Context, into *reply, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-p.lines:
		if !ok {
			<-p.done
			return fmt.Errorf("%s (pid %d) exited (%v)%s", p.name, p.pid, p.cmd.ProcessState, p.out.report())
		}
		return json.Unmarshal(line, into)
	case <-t.C:
		return fmt.Errorf("%s (pid %d): no answer within %v%s", p.name, p.pid, timeout, p.out.report())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop ends p: a role process on end of input, proxyto on SIGTERM (it
// drains: by then nothing is left open), then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	if p.stdin != nil {
		p.stdin.Close()
	} else {
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.done
	}
}

// alive reports whether p still runs.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// startProxyto runs the proxyto binary on listen with args and waits until
// it logs its "listening" line and its admin listener answers.
func startProxyto(ctx context.Context, bin string, idx int, listen string, args []string) (*proc, error) {
	var lastErr error
	for range 3 { // a free admin port can be taken between picking and binding
		admin, err := freeAddr()
		if err != nil {
			return nil, err
		}
		p := &proc{group: groupProxyto, name: fmt.Sprintf("proxyto-%d", idx), out: newTail(), done: make(chan struct{}), admin: admin}
		all := append([]string{"--listen", listen, "--admin", admin, "--log-format", "json"}, args...)
		p.cmd = exec.Command(bin, all...)
		p.cmd.SysProcAttr = sysProcAttr()
		listening := make(chan string, 1)
		p.cmd.Stdout = &lineWatcher{tail: p.out, fn: func(line []byte) {
			var m struct{ Msg, Listen string }
			if json.Unmarshal(line, &m) == nil && m.Msg == "listening" {
				select {
				case listening <- m.Listen:
				default:
				}
			}
		}}
		p.cmd.Stderr = p.out
		if err := p.start(); err != nil {
			return nil, err
		}
		select {
		case p.listen = <-listening:
		case <-p.done:
			lastErr = fmt.Errorf("%s %s: exited: %v%s", bin, strings.Join(all, " "), p.cmd.ProcessState, p.out.report())
			if strings.Contains(p.out.String(), "address already in use") && strings.Contains(p.out.String(), admin) {
				continue
			}
			return nil, lastErr
		case <-time.After(30 * time.Second):
			p.stop(time.Second)
			return nil, fmt.Errorf("%s: no listening line within 30s%s", p.name, p.out.report())
		case <-ctx.Done():
			p.stop(time.Second)
			return nil, ctx.Err()
		}
		for deadline := time.Now().Add(30 * time.Second); ; {
			if _, err := httpGet("http://" + admin + "/health"); err == nil {
				return p, nil
			} else if time.Now().After(deadline) || !p.alive() {
				p.stop(time.Second)
				return nil, fmt.Errorf("%s: admin %s: %v%s", p.name, admin, err, p.out.report())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil, lastErr
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

func httpGet(url string) (string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// metric sums the samples of name in a Prometheus text exposition whose
// labels contain every label="value" given.
func metric(exposition, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(exposition, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// rss is a process's resident set in bytes.
func rss(pid int) int64 {
	for _, line := range strings.Split(readProc("/proc/"+strconv.Itoa(pid)+"/status"), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// clockTicks is USER_HZ, which Linux fixes at 100 on every architecture Go
// supports.
const clockTicks = 100

// cpuSeconds is a process's user plus system CPU time.
func cpuSeconds(pid int) float64 {
	s := readProc("/proc/" + strconv.Itoa(pid) + "/stat")
	// The command name may hold spaces: fields count from its ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64) // utime, field 14
	k, _ := strconv.ParseFloat(f[12], 64) // stime, field 15
	return (u + k) / clockTicks
}

// tail keeps the last 64 KiB written to it. Safe for concurrent use.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func newTail() *tail { return &tail{} }

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 64<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-32<<10:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// report is the tail's last lines, for an error message.
func (t *tail) report() string {
	s := strings.TrimSpace(t.String())
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "\n    | " + strings.Join(lines, "\n    | ")
}

// lineWatcher passes every complete line to fn and keeps the output in
// tail.
type lineWatcher struct {
	tail *tail
	fn   func([]byte)
	part []byte
}

func (w *lineWatcher) Write(b []byte) (int, error) {
	_, _ = w.tail.Write(b)
	w.part = append(w.part, b...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.fn(w.part[:i])
		w.part = w.part[i+1:]
	}
	if len(w.part) > 64<<10 {
		w.part = w.part[:0]
	}
	return len(b), nil
}

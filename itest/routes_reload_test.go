package itest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/proxyto/proxyto/itest/harness"
)

// SIGHUP reloads the routes file and the htpasswd file without dropping
// a connection; a file that fails to load keeps what was in force.

// reloadLines counts proxyto's log lines whose msg starts with prefix.
func reloadLines(p *harness.Proxyto, prefix string) int {
	n := 0
	for _, l := range p.LogLines() {
		if m, _ := l["msg"].(string); strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// hup sends SIGHUP and waits for one more log line starting with prefix.
func hup(t *testing.T, p *harness.Proxyto, prefix string) {
	t.Helper()
	before := reloadLines(p, prefix)
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a log line "+prefix, func() bool { return reloadLines(p, prefix) > before })
}

// tunnelOnce opens a tunnel through @route to the echo origin and checks a
// round trip, returning an error instead of failing the test (it runs on
// worker goroutines), and the upstream's X-Exit-IP.
func tunnelOnce(p *harness.Proxyto, echo *harness.RawOrigin, route string) (string, error) {
	c, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, harness.ConnectHead(echo.Addr, "@"+route)); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("CONNECT @%s: %s %s", route, resp.Status, resp.Header.Get("Proxy-Status"))
	}
	if _, err := io.WriteString(c, "ping"); err != nil {
		return "", err
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		return "", fmt.Errorf("echo through @%s: %q %v", route, got, err)
	}
	return resp.Header.Get("X-Exit-IP"), nil
}

// TestRoutesReloadInFlight: reloads while tunnels are opened and held fail
// none of them; each new tunnel goes by the file in force when it started.
func TestRoutesReloadInFlight(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	a, b := exitUpstream(t, "a"), exitUpstream(t, "b")
	v1 := "routes:\n  r: {upstreams: " + upstreamsYAML(a.Addr) + "}\n"
	v2 := "routes:\n  r: {upstreams: " + upstreamsYAML(b.Addr) + "}\n  extra: {strategy: random, upstreams: " + upstreamsYAML(a.Addr, b.Addr) + "}\n"
	path := writeRoutes(t, "", v1)
	p := harness.StartProxyto(t, "--routes", path)

	held, _ := harness.Tunnel(t, p.Addr, echo.Addr, "@r")
	held.EchoRoundTrip("before the reloads")

	var stop atomic.Bool
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				got, err := tunnelOnce(p, echo, "r")
				if err == nil && got != "a" && got != "b" {
					err = fmt.Errorf("went to %q", got)
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := range 10 {
		if i%2 == 0 {
			writeRoutes(t, path, v2)
		} else {
			writeRoutes(t, path, v1)
		}
		hup(t, p, "reload: routes file loaded")
		held.EchoRoundTrip(fmt.Sprintf("after reload %d", i+1))
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d tunnels failed during reloads: %v", failed.Load(), failed.Load()+ok.Load(), errs)
	}
	if ok.Load() == 0 {
		t.Fatal("no tunnel was made during the reloads")
	}
	// The last file is v1.
	if got, err := tunnelOnce(p, echo, "r"); err != nil || got != "a" {
		t.Errorf("after the last reload: %q %v, want a", got, err)
	}
	if v := scrapeMetrics(t, p).value(t, "proxyto_config_reloads_total", map[string]string{"result": "ok"}); v != 10 {
		t.Errorf("proxyto_config_reloads_total{result=ok} = %v, want 10", v)
	}
	held.EchoRoundTrip("still alive")
}

// TestRoutesReloadMalformed: a file that fails to load keeps the routes in
// force, logs why without an entry's text, and counts an error; fixed, it
// loads.
func TestRoutesReloadMalformed(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	a := exitUpstream(t, "a", harness.WireUpstreamOptions{Auth: true, User: upUser, Pass: upPass})
	entry := `"http://` + creds + a.Addr + `"`
	path := writeRoutes(t, "", "routes:\n  r1: {upstreams: ["+entry+"]}\n")
	p := harness.StartProxyto(t, "--routes", path)

	for _, bad := range []string{
		"routes:\n  r1: {upstreams: [" + entry + "]}\n  r9: {strategy: fastest, upstreams: [" + entry + "]}\n",
		"routes:\n  r1: {upstreams: [" + entry + ", \"http://" + creds + "bad host:1\"]}\n  r9: {upstreams: [" + entry + "]}\n",
		"routes: [\n",
	} {
		writeRoutes(t, path, bad)
		hup(t, p, "reload: routes file failed")
		if got := via(t, p, echo, "X-Proxy-To: @r1"); got != "a" {
			t.Errorf("r1 after a failed reload went to %q, want a", got)
		}
		wantProxyError(t, connectStatus(t, p, echo.Addr, "X-Proxy-To: @r9"), 400, "http_request_error", 0)
	}
	if v := scrapeMetrics(t, p).value(t, "proxyto_config_reloads_total", map[string]string{"result": "error"}); v != 3 {
		t.Errorf("proxyto_config_reloads_total{result=error} = %v, want 3", v)
	}
	noSecretInLogs(t, p)

	writeRoutes(t, path, "routes:\n  r1: {upstreams: ["+entry+"]}\n  r9: {upstreams: ["+entry+"]}\n")
	hup(t, p, "reload: routes file loaded")
	via(t, p, echo, "X-Proxy-To: @r9")
	if v := scrapeMetrics(t, p).value(t, "proxyto_config_reloads_total", map[string]string{"result": "ok"}); v != 1 {
		t.Errorf("proxyto_config_reloads_total{result=ok} = %v, want 1", v)
	}
}

// TestReloadHtpasswd: SIGHUP reads the htpasswd file again; a file that
// fails to load keeps the credentials in force.
func TestReloadHtpasswd(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	dir := t.TempDir()
	file := filepath.Join(dir, "htpasswd")
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	write := func(s string) {
		if err := os.WriteFile(file+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write("alice:" + hash("one") + "\n")
	p := harness.StartProxyto(t, "--auth-htpasswd", file)
	status := func(user, pass string) int {
		t.Helper()
		resp := connectErr(t, p, harness.ConnectHead(echo.Addr, up.Addr, proxyAuth(user, pass)))
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := status("alice", "one"); s != 200 {
		t.Fatalf("alice:one before the reload: %d", s)
	}
	write("alice:" + hash("one") + "\nbob:" + hash("two") + "\n")
	hup(t, p, "reload: htpasswd file loaded")
	if s := status("bob", "two"); s != 200 {
		t.Errorf("bob:two after the reload: %d, want 200", s)
	}
	write("alice:not-a-bcrypt-hash\n")
	hup(t, p, "reload: htpasswd file failed")
	if s := status("bob", "two"); s != 200 {
		t.Errorf("bob:two after a failed reload: %d, want 200 (the old credentials stay)", s)
	}
	s := scrapeMetrics(t, p)
	if ok, bad := s.value(t, "proxyto_config_reloads_total", map[string]string{"result": "ok"}),
		s.value(t, "proxyto_config_reloads_total", map[string]string{"result": "error"}); ok != 1 || bad != 1 {
		t.Errorf("proxyto_config_reloads_total ok=%v error=%v, want 1 and 1", ok, bad)
	}
	if strings.Contains(p.Output(), "not-a-bcrypt-hash") {
		t.Error("the log holds the htpasswd file's contents")
	}
}

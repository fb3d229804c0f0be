package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Peer is a running Debian proxy (squid or tinyproxy) started by the harness.
type Peer struct {
	// Name is "squid" or "tinyproxy".
	Name string
	// Addr is its listener, "127.0.0.1:P".
	Addr string
	// PID is the process id of the main process.
	PID int
	// Dir holds its config, password file and logs.
	Dir string

	out  *syncBuffer
	done chan struct{}
}

// ProxyURL returns "http://user:pass@addr".
func (p *Peer) ProxyURL(username, password string) string {
	return "http://" + username + ":" + password + "@" + p.Addr
}

// Output returns what the process wrote to stdout and stderr.
func (p *Peer) Output() string { return p.out.String() }

// needBinary returns the path of a Debian binary, skipping the test when it is
// missing, or failing it when $CI is set (CI must not pass by skipping).
func needBinary(t TB, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("%s not found (%v): install Debian's %s package (scripts/install-test-deps.sh does)", path, err, pkg)
		if os.Getenv("CI") != "" {
			t.Fatal("harness: " + msg)
		}
		t.Skip("harness: " + msg)
	}
	return path
}

// peerDir makes a world-readable temp dir (the parent of t.TempDir is 0700, and
// squid drops root privileges to the proxy user, who must read its password
// file and write its logs). owner, when non-nil, receives the dir.
func peerDir(t TB, prefix string, owner *user.User) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("harness: %v", err)
	}
	if owner != nil {
		uid, _ := strconv.Atoi(owner.Uid)
		gid, _ := strconv.Atoi(owner.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("harness: chown %s: %v", dir, err)
		}
	}
	return dir
}

// startPeer runs argv in the background, waits until addr accepts, and stops
// the process by PID (SIGTERM, then SIGKILL) in t.Cleanup. It returns an
// error (with the process's output) if the process exits or does not listen
// in time; exited reports which, so that callers retry a port taken between
// FreeAddr and bind.
func startPeer(t TB, name, addr, dir string, argv []string, logFiles ...string) (p *Peer, exited bool, err error) {
	t.Helper()
	p = &Peer{Name: name, Addr: addr, Dir: dir, out: &syncBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: starting %s: %v", name, err)
	}
	p.PID = cmd.Process.Pid
	go func() { cmd.Wait(); close(p.done) }()
	logs := func() string {
		var b strings.Builder
		b.WriteString(p.out.String())
		for _, f := range logFiles {
			if data, err := os.ReadFile(f); err == nil {
				fmt.Fprintf(&b, "--- %s ---\n%s", f, data)
			}
		}
		return b.String()
	}
	stop := func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(p.PID, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
				<-p.done
			}
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("--- %s (pid %d) output ---\n%s", name, p.PID, logs())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitListening(ctx, addr, p.done); err != nil {
		stop()
		select {
		case <-p.done:
			exited = true
		default:
		}
		return nil, exited, fmt.Errorf("%s did not listen on %s: %v\n%s", name, addr, err, logs())
	}
	return p, false, nil
}

// retryPeer calls start with a fresh free address up to three times while the
// peer exits before listening (most likely: the port was taken meanwhile).
func retryPeer(t TB, start func(addr string) (*Peer, bool, error)) *Peer {
	t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var p *Peer
		var exited bool
		if p, exited, err = start(FreeAddr(t)); err == nil {
			return p
		} else if !exited {
			break
		}
	}
	t.Fatalf("harness: %v", err)
	return nil
}

// ApacheMD5 returns an htpasswd "$apr1$" hash of pass, made by openssl.
func ApacheMD5(t TB, pass string) string {
	t.Helper()
	bin := needBinary(t, "/usr/bin/openssl", "openssl")
	out, err := exec.Command(bin, "passwd", "-apr1", pass).Output()
	if err != nil {
		t.Fatalf("harness: openssl passwd -apr1: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// StartSquid runs Debian's squid on 127.0.0.1 in the foreground (-N) with
// Basic auth for user:pass (basic_ncsa_auth over an htpasswd file), no cache,
// and CONNECT allowed to any port. Skips (or fails under $CI) when squid is
// not installed.
func StartSquid(t TB, username, password string) *Peer {
	t.Helper()
	squid := needBinary(t, "/usr/sbin/squid", "squid")
	helper := needBinary(t, "/usr/lib/squid/basic_ncsa_auth", "squid")
	var owner *user.User
	if os.Geteuid() == 0 {
		// squid refuses to keep root privileges; it switches to
		// cache_effective_user, which must be able to use the dir.
		if u, err := lookupUser("proxy"); err == nil {
			owner = u
		}
	}
	dir := peerDir(t, "proxyto-itest-squid-", owner)
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(username+":"+ApacheMD5(t, password)+"\n"), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return retryPeer(t, func(addr string) (*Peer, bool, error) {
		return startSquid(t, squid, helper, dir, passwd, owner, addr)
	})
}

func startSquid(t TB, squid, helper, dir, passwd string, owner *user.User, addr string) (*Peer, bool, error) {
	t.Helper()
	var conf strings.Builder
	fmt.Fprintf(&conf, `# written by proxyto's itest harness
http_port %s
visible_hostname proxyto-itest
pid_filename %s
cache_log stdio:%s
access_log stdio:%s
cache_store_log none
coredump_dir %s
cache deny all
cache_mem 8 MB
pinger_enable off
shutdown_lifetime 1 seconds
forwarded_for delete
via off
`, addr, filepath.Join(dir, "squid.pid"), filepath.Join(dir, "cache.log"), filepath.Join(dir, "access.log"), dir)
	if owner != nil {
		fmt.Fprintf(&conf, "cache_effective_user %s\n", owner.Username)
	}
	// No Safe_ports/SSL_ports ACLs: CONNECT to any (high loopback) port is allowed.
	fmt.Fprintf(&conf, `auth_param basic program %s %s
auth_param basic children 2 startup=1 idle=1
auth_param basic realm proxyto-itest
acl authed proxy_auth REQUIRED
http_access deny !authed
http_access allow authed
http_access deny all
`, helper, passwd)
	cfg := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(cfg, []byte(conf.String()), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	os.Remove(filepath.Join(dir, "cache.log")) // a previous attempt's
	return startPeer(t, "squid", addr, dir, []string{squid, "-N", "-f", cfg}, filepath.Join(dir, "cache.log"))
}

// StartTinyproxy runs Debian's tinyproxy on 127.0.0.1 in the foreground (-d)
// with BasicAuth user pass and no ConnectPort lines (CONNECT to any port).
// Skips (or fails under $CI) when tinyproxy is not installed.
func StartTinyproxy(t TB, username, password string) *Peer {
	t.Helper()
	bin := needBinary(t, "/usr/bin/tinyproxy", "tinyproxy")
	dir := peerDir(t, "proxyto-itest-tinyproxy-", nil)
	return retryPeer(t, func(addr string) (*Peer, bool, error) {
		return startTinyproxy(t, bin, dir, username, password, addr)
	})
}

func startTinyproxy(t TB, bin, dir, username, password, addr string) (*Peer, bool, error) {
	t.Helper()
	conf := fmt.Sprintf(`# written by proxyto's itest harness
Port %d
Listen 127.0.0.1
Timeout 120
MaxClients 200
PidFile "%s"
LogLevel Info
BasicAuth %s %s
DisableViaHeader Yes
`, Port(t, addr), filepath.Join(dir, "tinyproxy.pid"), username, password)
	cfg := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return startPeer(t, "tinyproxy", addr, dir, []string{bin, "-d", "-c", cfg})
}

func lookupUser(name string) (*user.User, error) { return user.Lookup(name) }

// Command fakeproxyto is a small net/http stand-in for proxyto, used only to
// self-test the deployment scripts (image-test, nginx-test, vegeta) while the
// real engine is not built. It is not a product and is never shipped: it
// speaks just enough of proxyto's surface for those scripts:
//
//	proxyto [run] [--listen ADDR] [--admin ADDR] [--drain-timeout D]   (PROXYTO_LISTEN, PROXYTO_ADMIN, PROXYTO_DRAIN_TIMEOUT)
//	proxyto healthcheck [--admin ADDR]
//	proxyto version
//
// CONNECT and absolute-form requests go through the upstream proxy named in
// X-Proxy-To; /health, /ready and /metrics are served on the admin address;
// SIGTERM turns /ready to 503, closes the listener, waits for in-flight work up
// to the drain timeout and exits 0.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var version = "dev"

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func main() {
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	admin := fs.String("admin", env("PROXYTO_ADMIN", "127.0.0.1:9090"), "admin address")
	listen := fs.String("listen", env("PROXYTO_LISTEN", ":8080"), "client listener address")
	drainS := fs.String("drain-timeout", env("PROXYTO_DRAIN_TIMEOUT", "30s"), "drain timeout")
	_ = fs.Parse(args)
	switch cmd {
	case "version":
		fmt.Println("proxyto (fakeproxyto stand-in)", version)
	case "healthcheck":
		if err := healthcheck(*admin); err != nil {
			fmt.Fprintln(os.Stderr, "proxyto:", err)
			os.Exit(1)
		}
	case "run":
		drain, err := time.ParseDuration(*drainS)
		if err != nil {
			log.Fatalf("proxyto: --drain-timeout: %v", err)
		}
		if err := run(*listen, *admin, drain); err != nil {
			fmt.Fprintln(os.Stderr, "proxyto:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "proxyto: unknown command", cmd)
		os.Exit(2)
	}
}

func healthcheck(admin string) error {
	if strings.HasPrefix(admin, ":") {
		admin = "127.0.0.1" + admin
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + admin + "/health")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/health answered %s", resp.Status)
	}
	return nil
}

type gateway struct {
	draining atomic.Bool
	inflight sync.WaitGroup
	requests atomic.Int64
	tunnels  atomic.Int64
	active   atomic.Int64
}

func run(listen, admin string, drain time.Duration) error {
	g := &gateway{}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	if admin != "" {
		al, err := net.Listen("tcp", admin)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		go func() { _ = http.Serve(al, g.adminMux()) }()
	}
	log.Printf(`{"level":"info","msg":"listening","listen":%q,"admin":%q,"version":%q,"stand_in":true}`, ln.Addr(), admin, version)

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	log.Printf(`{"level":"info","msg":"draining","signal":%q,"drain_timeout":%q}`, s, drain)
	g.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	go func() { <-sig; cancel() }()
	_ = srv.Shutdown(ctx) // closes the listener, waits for non-hijacked requests
	done := make(chan struct{})
	go func() { g.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		log.Printf(`{"level":"warn","msg":"drain ended early"}`)
	}
	log.Printf(`{"level":"info","msg":"stopped"}`)
	return nil
}

func (g *gateway) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if g.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE proxyto_requests_total counter\nproxyto_requests_total{kind=\"http\",error=\"\"} %d\nproxyto_requests_total{kind=\"connect\",error=\"\"} %d\n", g.requests.Load(), g.tunnels.Load())
		fmt.Fprintf(w, "# TYPE proxyto_client_connections gauge\nproxyto_client_connections %d\n", g.active.Load())
	})
	return mux
}

// upstream parses X-Proxy-To: [scheme://][user[:pass]@]host[:port].
func upstream(h string) (*url.URL, error) {
	if h == "" {
		return nil, errors.New("no X-Proxy-To")
	}
	if !strings.Contains(h, "://") {
		h = "http://" + h
	}
	u, err := url.Parse(h)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return nil, fmt.Errorf("bad X-Proxy-To %q", h)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "8080")
	}
	return u, nil
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.inflight.Add(1)
	defer g.inflight.Done()
	g.active.Add(1)
	defer g.active.Add(-1)
	up, err := upstream(r.Header.Get("X-Proxy-To"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodConnect {
		g.connect(w, r, up)
		return
	}
	g.requests.Add(1)
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("X-Proxy-To")
	out.Header.Del("Proxy-Connection")
	tr := &http.Transport{Proxy: http.ProxyURL(up), DisableKeepAlives: true}
	resp, err := tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (g *gateway) connect(w http.ResponseWriter, r *http.Request, up *url.URL) {
	g.tunnels.Add(1)
	uc, err := net.DialTimeout("tcp", up.Host, 10*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer uc.Close()
	req := "CONNECT " + r.Host + " HTTP/1.1\r\nHost: " + r.Host + "\r\n"
	if up.User != nil {
		pw, _ := up.User.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(up.User.Username()+":"+pw)) + "\r\n"
	}
	if _, err := io.WriteString(uc, req+"\r\n"); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	br := bufio.NewReader(uc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		http.Error(w, "upstream refused CONNECT", http.StatusBadGateway)
		return
	}
	c, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(uc, io.MultiReader(brw.Reader, c))
		uc.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() { _, _ = io.Copy(c, br); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

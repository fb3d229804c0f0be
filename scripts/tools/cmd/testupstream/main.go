// Command testupstream is the loopback upstream proxy and origin server that
// the deployment scripts (image-test, nginx-test, vegeta) send traffic to.
//
// It listens on two loopback addresses (port 0 by default) and writes them as
// "proxy=HOST:PORT" and "origin=HOST:PORT" lines to -addr-file once both are
// bound, so a script never races for a port:
//
//	upstream proxy: CONNECT host:port (a TCP tunnel) and absolute-form
//	                requests (GET http://host/path), optional Basic auth
//	origin:         GET /        "origin ok\n"
//	                GET /small   128 bytes
//	                GET /slow?d= a body sent in pieces over d (default 2s)
//
// Every response that passed through the proxy carries "Via: 1.1 testupstream",
// and the proxy counts what it carried on GET /stats of the origin.
package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	tunnels  atomic.Int64 // CONNECT tunnels opened
	forwards atomic.Int64 // absolute-form requests forwarded
)

func main() {
	proxyAddr := flag.String("proxy", "127.0.0.1:0", "upstream proxy listen address")
	originAddr := flag.String("origin", "127.0.0.1:0", "origin server listen address")
	auth := flag.String("auth", "", "proxy credentials user:pass required in Proxy-Authorization (empty: none)")
	hosts := flag.String("hosts", "", "comma-separated name=ip overrides used when dialing targets (e.g. origin.test=127.0.0.1)")
	addrFile := flag.String("addr-file", "", "write the bound addresses here (proxy=..., origin=...)")
	flag.Parse()

	override := map[string]string{}
	for _, kv := range strings.Split(*hosts, ",") {
		if name, ip, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			override[strings.ToLower(name)] = ip
		}
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if ip, ok := override[strings.ToLower(host)]; ok {
				addr = net.JoinHostPort(ip, port)
			}
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		return d.DialContext(ctx, network, addr)
	}

	pl, err := net.Listen("tcp", *proxyAddr)
	if err != nil {
		log.Fatalf("testupstream: proxy listener: %v", err)
	}
	ol, err := net.Listen("tcp", *originAddr)
	if err != nil {
		log.Fatalf("testupstream: origin listener: %v", err)
	}

	var wantAuth string
	if *auth != "" {
		wantAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(*auth))
	}
	transport := &http.Transport{DialContext: dial, Proxy: nil, MaxIdleConnsPerHost: 256, ResponseHeaderTimeout: 30 * time.Second}
	proxy := &http.Server{Handler: &proxyHandler{auth: wantAuth, dial: dial, rt: transport}, ReadHeaderTimeout: 10 * time.Second}
	origin := &http.Server{Handler: originMux(), ReadHeaderTimeout: 10 * time.Second}
	go func() { log.Print(proxy.Serve(pl)) }()
	go func() { log.Print(origin.Serve(ol)) }()

	if *addrFile != "" {
		body := fmt.Sprintf("proxy=%s\norigin=%s\n", pl.Addr(), ol.Addr())
		if err := os.WriteFile(*addrFile+".tmp", []byte(body), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("testupstream: proxy on %s, origin on %s", pl.Addr(), ol.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = proxy.Shutdown(ctx)
	_ = origin.Shutdown(ctx)
}

type proxyHandler struct {
	auth string
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	rt   http.RoundTripper
}

// hopHeaders are removed before a request or response is forwarded.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (p *proxyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.auth != "" && r.Header.Get("Proxy-Authorization") != p.auth {
		w.Header().Set("Proxy-Authenticate", `Basic realm="testupstream"`)
		http.Error(w, "proxy auth required", http.StatusProxyAuthRequired)
		return
	}
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "testupstream: absolute-form request expected", http.StatusBadRequest)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		http.Error(w, "testupstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	forwards.Add(1)
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.Header().Add("Via", "1.1 testupstream")
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (p *proxyHandler) connect(w http.ResponseWriter, r *http.Request) {
	up, err := p.dial(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, "testupstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "testupstream: no hijack", http.StatusInternalServerError)
		return
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	tunnels.Add(1)
	_, _ = c.Write([]byte("HTTP/1.1 200 Connection established\r\nVia: 1.1 testupstream\r\n\r\n"))
	done := make(chan struct{}, 2)
	go func() { // client -> target, including bytes already buffered
		if n := brw.Reader.Buffered(); n > 0 {
			b, _ := brw.Reader.Peek(n)
			_, _ = up.Write(b)
		}
		_, _ = io.Copy(up, c)
		closeWrite(up)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(c, up)
		closeWrite(c)
		done <- struct{}{}
	}()
	<-done
	<-done
	c.Close()
	up.Close()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}

func originMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "origin ok\n")
	})
	small := strings.Repeat("x", 127) + "\n"
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, small)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d <= 0 || d > time.Minute {
			d = 2 * time.Second
		}
		const pieces = 10
		fl, _ := w.(http.Flusher)
		for i := range pieces {
			fmt.Fprintf(w, "piece %d\n", i)
			if fl != nil {
				fl.Flush()
			}
			select {
			case <-time.After(d / pieces):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprint(w, "slow done\n")
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tunnels=%d\nforwards=%d\n", tunnels.Load(), forwards.Load())
	})
	return mux
}

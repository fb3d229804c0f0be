// Command testupstream is the loopback upstream proxy and origin server that
// the deployment scripts (image-test, nginx-test, vegeta) send traffic to: the
// itest harness's WireUpstream and WireOrigin in a process of their own.
//
// It listens on two 127.0.0.1 ports picked at start and writes them as
// "proxy=HOST:PORT" and "origin=HOST:PORT" lines to -addr-file once both are
// bound, so a script never races for a port:
//
//	upstream proxy: CONNECT host:port (a TCP tunnel) and absolute-form
//	                requests (GET http://host/path), optional Basic auth
//	origin:         GET /        "origin ok\n"
//	                GET /small   128 bytes
//	                GET /slow?d= a body sent in pieces over d (default 2s)
//	                GET /stats   "tunnels=N\nforwards=N\n": what the proxy carried
//	                and the rest of WireOrigin's paths
//
// Every response that passed through the proxy carries "Via: 1.1 testupstream".
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proxyto/proxyto/itest/harness"
)

const via = "Via: 1.1 testupstream"

func main() {
	auth := flag.String("auth", "", "proxy credentials user:pass required in Proxy-Authorization (empty: none)")
	hosts := flag.String("hosts", "", "comma-separated name=ip overrides used when dialing targets (e.g. origin.test=127.0.0.1)")
	addrFile := flag.String("addr-file", "", "write the bound addresses here (proxy=..., origin=...)")
	flag.Parse()

	t := &harness.ProgramTB{Name: "testupstream"}
	defer t.Close()

	override := map[string]string{}
	for _, kv := range strings.Split(*hosts, ",") {
		if name, ip, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			override[strings.ToLower(name)] = ip
		}
	}
	var tunnels, forwards atomic.Int64
	opt := harness.WireUpstreamOptions{
		NoRecord:       true,
		ConnectHeaders: []string{via},
		ResponseFields: []string{via},
		OnHead: func(h *harness.WireHead) {
			if m, _, _ := h.RequestLine(); m == "CONNECT" {
				tunnels.Add(1)
			} else {
				forwards.Add(1)
			}
		},
		Dial: func(addr string) (net.Conn, error) {
			if host, port, err := net.SplitHostPort(addr); err == nil {
				if ip, ok := override[strings.ToLower(host)]; ok {
					addr = net.JoinHostPort(ip, port)
				}
			}
			return net.DialTimeout("tcp", addr, 5*time.Second)
		},
	}
	if *auth != "" {
		user, pass, _ := strings.Cut(*auth, ":")
		opt.Auth, opt.User, opt.Pass = true, user, pass
	}
	up := harness.StartWireUpstream(t, opt)
	origin := harness.StartWireOrigin(t)
	origin.StopRecording()
	origin.Handle("/", func(x *harness.OriginExchange) bool {
		if x.URL.Path != "/" {
			return text(x, 404, "not found\n")
		}
		return text(x, 200, "origin ok\n")
	})
	origin.Handle("/small", func(x *harness.OriginExchange) bool {
		return text(x, 200, strings.Repeat("x", 127)+"\n")
	})
	origin.Handle("/slow", slow)
	origin.Handle("/stats", func(x *harness.OriginExchange) bool {
		return text(x, 200, fmt.Sprintf("tunnels=%d\nforwards=%d\n", tunnels.Load(), forwards.Load()))
	})

	if *addrFile != "" {
		body := fmt.Sprintf("proxy=%s\norigin=%s\n", up.Addr, origin.Addr)
		if err := os.WriteFile(*addrFile+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("proxy on %s, origin on %s", up.Addr, origin.Addr)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

// text answers with a text/plain body.
func text(x *harness.OriginExchange, code int, body string) bool {
	x.ReadBody()
	x.WriteString(fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
		code, map[int]string{200: "OK", 404: "Not Found"}[code], len(body), body))
	return true
}

// slow sends ten pieces, chunked, over d (?d=, default 2s, at most a minute).
func slow(x *harness.OriginExchange) bool {
	x.ReadBody()
	d, err := time.ParseDuration(x.URL.Query().Get("d"))
	if err != nil || d <= 0 || d > time.Minute {
		d = 2 * time.Second
	}
	const pieces = 10
	x.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
	for i := range pieces {
		if harness.WriteChunked(x, fmt.Appendf(nil, "piece %d\n", i)) != nil {
			return false
		}
		time.Sleep(d / pieces)
	}
	if harness.WriteChunked(x, []byte("slow done\n")) != nil {
		return false
	}
	return harness.WriteLastChunk(x) == nil
}

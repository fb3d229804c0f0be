package itest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proxyto/proxyto/itest/harness"
)

// Upstream name resolution through the cache (docs/routes.md, "Name
// resolution"), against a DNS server in the test that counts the queries
// proxyto sends it (--dns-server).

// dnsServer answers A queries from a table (AAAA: no address) and counts
// every question by "name TYPE".
type dnsServer struct {
	addr string

	mu      sync.Mutex
	a       map[string]dnsAnswer // by lower-case FQDN; absent: NXDOMAIN
	queries map[string]int
}

type dnsAnswer struct {
	ip   string
	ttl  uint32
	hold time.Duration // delay before answering
}

func startDNS(t *testing.T, a map[string]dnsAnswer) *dnsServer {
	t.Helper()
	s := &dnsServer{a: map[string]dnsAnswer{}, queries: map[string]int{}}
	for name, ans := range a {
		s.a[dns.Fqdn(name)] = ans
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return s
}

func (s *dnsServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries[name+" "+dns.TypeToString[q.Qtype]]++
	ans, ok := s.a[name]
	s.mu.Unlock()
	if ans.hold > 0 {
		time.Sleep(ans.hold)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ans.ttl},
			A:   net.ParseIP(ans.ip).To4(),
		})
	}
	_ = w.WriteMsg(m)
}

// aQueries is how many A queries for name the server received.
func (s *dnsServer) aQueries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[dns.Fqdn(name)+" A"]
}

func (s *dnsServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.queries {
		n += c
	}
	return n
}

// hostPort replaces the host of a loopback listener address by name.
func hostPort(name, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(name, port)
}

func TestDNSCache(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	socks := harness.StartSocks5(t, false, "", "")
	d := startDNS(t, map[string]dnsAnswer{
		"up.test":     {ip: "127.0.0.1", ttl: 300},
		"zero.test":   {ip: "127.0.0.1", ttl: 0},
		"burst.test":  {ip: "127.0.0.1", ttl: 300, hold: 500 * time.Millisecond},
		"origin.test": {ip: "127.0.0.1", ttl: 300},
	})
	// The cache's bounds far above the test's length: nothing expires here.
	p := harness.StartProxyto(t, "--dns-server", d.addr, "--dns-ttl-min", "1m", "--dns-negative-ttl", "1m")
	tunnel := func(target, xpt string) {
		t.Helper()
		c, _ := harness.Tunnel(t, p.Addr, target, xpt)
		c.EchoRoundTrip("x")
		c.Close()
	}

	t.Run("one query per name while cached", func(t *testing.T) {
		for range 5 {
			tunnel(echo.Addr, hostPort("up.test", up.Addr))
		}
		if n := d.aQueries("up.test"); n != 1 {
			t.Errorf("%d A queries for 5 tunnels, want 1", n)
		}
	})
	t.Run("TTL 0 held for --dns-ttl-min", func(t *testing.T) {
		for range 3 {
			tunnel(echo.Addr, hostPort("ZERO.test", up.Addr))
		}
		if n := d.aQueries("zero.test"); n != 1 {
			t.Errorf("%d A queries, want 1", n)
		}
	})
	t.Run("failures cached", func(t *testing.T) {
		for range 3 {
			wantProxyError(t, connectErr(t, p, harness.ConnectHead(echo.Addr, hostPort("gone.test", up.Addr))), 502, "dns_error", 0)
		}
		if n := d.aQueries("gone.test"); n != 1 {
			t.Errorf("%d A queries for a name that does not exist, want 1", n)
		}
	})
	t.Run("invalid never asked", func(t *testing.T) {
		before := d.total()
		wantProxyError(t, connectErr(t, p, harness.ConnectHead(echo.Addr, hostPort("proxy.invalid", up.Addr))), 502, "dns_error", 0)
		if n := d.total() - before; n != 0 {
			t.Errorf("%d queries for a name under .invalid, want 0", n)
		}
	})
	t.Run("concurrent lookups share one query", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", p.Addr)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprint(c, harness.ConnectHead(echo.Addr, hostPort("burst.test", up.Addr)))
				buf := make([]byte, 12)
				if _, err := c.Read(buf); err != nil || string(buf) != "HTTP/1.1 200" {
					errs <- fmt.Errorf("answer %q %v", buf, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := d.aQueries("burst.test"); n != 1 {
			t.Errorf("%d A queries for 10 concurrent tunnels, want 1", n)
		}
	})
	t.Run("socks5 targets resolved through the cache", func(t *testing.T) {
		for range 3 {
			tunnel(hostPort("origin.test", echo.Addr), "socks5://"+socks.Addr)
		}
		if n := d.aQueries("origin.test"); n != 1 {
			t.Errorf("%d A queries for a socks5 target, want 1", n)
		}
		reqs := socks.Requests()
		if len(reqs) != 3 || reqs[0].Atyp != harness.Socks5AtypIPv4 || reqs[0].Host != "127.0.0.1" {
			t.Errorf("socks5 upstream got %+v, want 3 requests for 127.0.0.1", reqs)
		}
	})
	s := scrapeMetrics(t, p)
	if v := s.value(t, "proxyto_dns_cache_lookups_total", map[string]string{"result": "hit"}); v <= 0 {
		t.Errorf("proxyto_dns_cache_lookups_total{result=hit} = %v", v)
	}
	if v := s.value(t, "proxyto_dns_queries_total", nil); v != float64(d.total()) {
		t.Errorf("proxyto_dns_queries_total = %v, the server counted %d", v, d.total())
	}
}

// TestDNSCacheExpiry: answers live no longer than --dns-ttl-max, failures
// no longer than --dns-negative-ttl. (Only lower bounds are waited for.)
func TestDNSCacheExpiry(t *testing.T) {
	echo := harness.StartEchoOrigin(t)
	up := harness.StartWireUpstream(t, harness.WireUpstreamOptions{})
	d := startDNS(t, map[string]dnsAnswer{"up.test": {ip: "127.0.0.1", ttl: 3600}})
	p := harness.StartProxyto(t, "--dns-server", d.addr, "--dns-ttl-max", "1s", "--dns-negative-ttl", "1s")
	for i := range 2 {
		c, _ := harness.Tunnel(t, p.Addr, echo.Addr, hostPort("up.test", up.Addr))
		c.Close()
		wantProxyError(t, connectErr(t, p, harness.ConnectHead(echo.Addr, hostPort("gone.test", up.Addr))), 502, "dns_error", 0)
		if i == 0 {
			time.Sleep(1500 * time.Millisecond)
		}
	}
	if n := d.aQueries("up.test"); n != 2 {
		t.Errorf("%d A queries across --dns-ttl-max, want 2", n)
	}
	if n := d.aQueries("gone.test"); n != 2 {
		t.Errorf("%d A queries across --dns-negative-ttl, want 2", n)
	}
}

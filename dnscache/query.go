package dnscache

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// sysConfRecheck is how often resolv.conf and the hosts file are checked for
// changes (a stat each, on the lookup path only), as Go's resolver does.
const (
	sysConfRecheck = 5 * time.Second
	hostsRecheck   = 5 * time.Second
)

// maxCNAMEs bounds the CNAME chain followed inside one answer.
const maxCNAMEs = 8

// ednsSize is the UDP payload size advertised (the DNS Flag Day 2020 value).
const ednsSize = 1232

// conf is what a lookup needs from resolv.conf (or Config.Server).
type conf struct {
	servers  []string // host:port
	client   *dns.ClientConfig
	fixed    bool // Config.Server: no search list
	timeout  time.Duration
	attempts int
}

// names returns the names to query for name, in order.
func (c *conf) names(name string) []string {
	if c.fixed {
		return []string{dns.Fqdn(name)}
	}
	return c.client.NameList(name)
}

// sysConf holds the current conf, re-reading resolv.conf when it changes.
type sysConf struct {
	mu      sync.Mutex
	path    string
	cur     *conf
	timeout time.Duration // Config.Timeout, 0 for resolv.conf's
	port    string        // Config.port
	checked int64
	mtime   time.Time
}

func (s *sysConf) init(cfg Config) error {
	s.path, s.timeout, s.port = cfg.ResolvConf, cfg.Timeout, cfg.port
	if cfg.Server == "" {
		s.cur = s.read()
		s.checked = -1 << 62
		return nil
	}
	host, port, err := net.SplitHostPort(cfg.Server)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("proxyto: dns server %q is not host:port", cfg.Server)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	s.cur = &conf{servers: []string{cfg.Server}, fixed: true, timeout: timeout, attempts: 2}
	return nil
}

// get returns the conf, re-reading resolv.conf at most every
// sysConfRecheck when its modification time changed.
func (s *sysConf) get(now int64) *conf {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.fixed || now-s.checked < int64(sysConfRecheck) {
		return s.cur
	}
	s.checked = now
	if fi, err := os.Stat(s.path); err == nil && !fi.ModTime().Equal(s.mtime) {
		s.mtime = fi.ModTime()
		s.cur = s.read()
	}
	return s.cur
}

// read parses resolv.conf; without one it falls back to a resolver on the
// local host, as Go's and glibc's resolvers do.
func (s *sysConf) read() *conf {
	cc, err := dns.ClientConfigFromFile(s.path)
	if err != nil || len(cc.Servers) == 0 {
		cc = &dns.ClientConfig{Servers: []string{"127.0.0.1", "::1"}, Port: "53", Ndots: 1, Timeout: 5, Attempts: 2}
	}
	c := &conf{client: cc, timeout: time.Duration(cc.Timeout) * time.Second, attempts: max(cc.Attempts, 1)}
	if s.timeout > 0 {
		c.timeout = s.timeout
	}
	if s.port != "" {
		cc.Port = s.port
	}
	for _, srv := range cc.Servers {
		c.servers = append(c.servers, net.JoinHostPort(srv, cc.Port))
	}
	return c
}

// outcome of one name's queries.
type outcome uint8

const (
	found    outcome = iota
	notFound         // NXDOMAIN, or no A and no AAAA record
	failed           // no answer: timeouts, SERVFAIL, network errors
)

// query resolves a folded name through DNS and returns the entry to cache.
func (r *Resolver) query(ctx context.Context, name string) *entry {
	c := r.sys.get(r.now())
	anyFailed := false
	for _, qname := range c.names(name) {
		addrs, ttl, out := r.queryName(ctx, c, qname)
		switch out {
		case found:
			d := min(max(time.Duration(ttl)*time.Second, r.cfg.MinTTL), r.cfg.MaxTTL)
			return &entry{addrs: r.order(addrs), exp: r.now() + int64(d)}
		case failed:
			anyFailed = true
		}
		if ctx.Err() != nil {
			break
		}
	}
	e := &entry{err: errNoSuchHost, exp: r.now() + int64(r.cfg.NegativeTTL)}
	if anyFailed {
		e.err = errTimeout
	}
	return e
}

// answer is one query type's result.
type answer struct {
	addrs []netip.Addr
	ttl   uint32
	out   outcome
}

// queryName asks for A and AAAA records of a fully qualified name at once.
func (r *Resolver) queryName(ctx context.Context, c *conf, qname string) ([]netip.Addr, uint32, outcome) {
	var v6 answer
	done := make(chan struct{})
	go func() {
		v6 = r.ask(ctx, c, qname, dns.TypeAAAA)
		close(done)
	}()
	v4 := r.ask(ctx, c, qname, dns.TypeA)
	<-done
	addrs := append(v4.addrs, v6.addrs...)
	switch {
	case len(addrs) > 0:
		ttl := v4.ttl
		if len(v4.addrs) == 0 || len(v6.addrs) > 0 && v6.ttl < ttl {
			ttl = v6.ttl
		}
		return addrs, ttl, found
	case v4.out == failed || v6.out == failed:
		return nil, 0, failed
	}
	return nil, 0, notFound
}

// ask sends one question to each server in turn, Attempts rounds, until one
// answers NOERROR or NXDOMAIN. A truncated UDP answer is asked again over
// TCP.
func (r *Resolver) ask(ctx context.Context, c *conf, qname string, qtype uint16) answer {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.SetEdns0(ednsSize, false)
	udp := &dns.Client{Net: "udp", Timeout: c.timeout, UDPSize: ednsSize}
	tcp := &dns.Client{Net: "tcp", Timeout: c.timeout}
	for range c.attempts {
		for _, srv := range c.servers {
			if ctx.Err() != nil {
				return answer{out: failed}
			}
			r.queries.Add(1)
			resp, _, err := udp.ExchangeContext(ctx, m, srv)
			if err == nil && resp.Truncated {
				r.queries.Add(1)
				resp, _, err = tcp.ExchangeContext(ctx, m, srv)
			}
			if err != nil || resp == nil {
				continue
			}
			switch resp.Rcode {
			case dns.RcodeNameError:
				return answer{out: notFound}
			case dns.RcodeSuccess:
				addrs, ttl := extract(resp, qname, qtype)
				if len(addrs) == 0 {
					return answer{out: notFound}
				}
				return answer{addrs: addrs, ttl: ttl, out: found}
			}
			// SERVFAIL, REFUSED, ...: the next server may do better.
		}
	}
	return answer{out: failed}
}

// extract returns the addresses of type qtype for qname in resp, following
// the CNAME chain the server included, and the smallest TTL on that chain.
func extract(resp *dns.Msg, qname string, qtype uint16) ([]netip.Addr, uint32) {
	target := qname
	ttl := ^uint32(0)
	for range maxCNAMEs {
		next := ""
		for _, rr := range resp.Answer {
			if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, target) {
				next = cn.Target
				ttl = min(ttl, cn.Hdr.Ttl)
				break
			}
		}
		if next == "" {
			break
		}
		target = next
	}
	var addrs []netip.Addr
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Rrtype != qtype || !strings.EqualFold(h.Name, target) {
			continue
		}
		var a netip.Addr
		switch v := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(v.AAAA.To16())
		}
		if !a.IsValid() {
			continue
		}
		addrs = append(addrs, a.Unmap())
		ttl = min(ttl, h.Ttl)
	}
	if len(addrs) == 0 {
		return nil, 0
	}
	return addrs, ttl
}

package dnscache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/proxyto/proxyto/proxystatus"
)

// record is what the test server answers for one name.
type record struct {
	a, aaaa []string
	ttl     uint32
	rcode   int           // dns.RcodeSuccess when 0
	cname   string        // answer with a CNAME to this name first
	hold    chan struct{} // block the answer until closed
	silent  bool          // never answer
	trunc   bool          // over UDP, answer truncated
}

// server is a DNS server on 127.0.0.1 that counts the queries it gets.
type server struct {
	addr string

	mu      sync.Mutex
	records map[string]*record // by lower-case FQDN
	any     *record            // answer for names not in records
	queries map[string]int     // "name TYPE" → count
	tcp     atomic.Int32
	got     chan string // every question, if not nil
}

func newServer(t testing.TB) *server {
	t.Helper()
	s := &server{records: map[string]*record{}, queries: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no free port for UDP and TCP")
	}
	s.addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve("udp"))}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve("tcp"))}
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return s
}

func (s *server) set(name string, r *record) {
	s.mu.Lock()
	s.records[dns.Fqdn(name)] = r
	s.mu.Unlock()
}

// setAny sets the answer for every name not set.
func (s *server) setAny(r *record) {
	s.mu.Lock()
	s.any = r
	s.mu.Unlock()
}

func (s *server) count(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[dns.Fqdn(name)+" "+dns.TypeToString[qtype]]
}

func (s *server) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.queries {
		n += c
	}
	return n
}

func (s *server) serve(network string) func(w dns.ResponseWriter, req *dns.Msg) {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		s.mu.Lock()
		s.queries[name+" "+dns.TypeToString[q.Qtype]]++
		r := s.records[name]
		if r == nil {
			r = s.any
		}
		got := s.got
		s.mu.Unlock()
		if network == "tcp" {
			s.tcp.Add(1)
		}
		if got != nil {
			got <- name
		}
		m := new(dns.Msg)
		m.SetReply(req)
		if r == nil {
			m.Rcode = dns.RcodeNameError
			_ = w.WriteMsg(m)
			return
		}
		if r.silent {
			return
		}
		if r.hold != nil {
			<-r.hold
		}
		if r.rcode != 0 {
			m.Rcode = r.rcode
			_ = w.WriteMsg(m)
			return
		}
		if r.trunc && network == "udp" {
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
		owner := q.Name
		if r.cname != "" {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: r.ttl + 100}, Target: dns.Fqdn(r.cname)})
			owner = dns.Fqdn(r.cname)
		}
		switch q.Qtype {
		case dns.TypeA:
			for _, a := range r.a {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: r.ttl}, A: net.ParseIP(a)})
			}
		case dns.TypeAAAA:
			for _, a := range r.aaaa {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: r.ttl}, AAAA: net.ParseIP(a)})
			}
		}
		// An unrelated record the resolver must ignore.
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "other.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.ParseIP("192.0.2.99")})
		_ = w.WriteMsg(m)
	}
}

// clock is a fake monotonic clock.
type clock struct{ t atomic.Int64 }

func (c *clock) now() int64          { return c.t.Load() }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }

// newResolver returns a resolver sending every query to s, with a fake
// clock and an empty hosts file.
func newResolver(t testing.TB, s *server, cfg Config) (*Resolver, *clock) {
	t.Helper()
	c := &clock{}
	c.t.Store(int64(time.Hour))
	if cfg.Server == "" && cfg.ResolvConf == "" {
		cfg.Server = s.addr
	}
	if cfg.HostsFile == "" {
		cfg.HostsFile = writeFile(t, "hosts", "# empty\n")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	cfg.Now = c.now
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func lookup(t testing.TB, r *Resolver, host string) []netip.Addr {
	t.Helper()
	got, err := r.Lookup(context.Background(), host)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", host, err)
	}
	return got
}

func cached(r *Resolver, host string) ([]netip.Addr, bool, error) {
	return r.Cached(nil, []byte(host))
}

func TestTTLHonoured(t *testing.T) {
	s := newServer(t)
	s.set("up.example", &record{a: []string{"192.0.2.1", "192.0.2.2"}, aaaa: []string{"2001:db8::1"}, ttl: 30})
	r, c := newResolver(t, s, Config{})
	want := addrs("192.0.2.1", "192.0.2.2", "2001:db8::1")

	if _, hit, _ := cached(r, "up.example"); hit {
		t.Fatal("hit before any lookup")
	}
	if got := lookup(t, r, "up.example"); !slices.Equal(got, want) {
		t.Fatalf("Lookup = %v, want %v", got, want)
	}
	if s.count("up.example", dns.TypeA) != 1 || s.count("up.example", dns.TypeAAAA) != 1 {
		t.Fatalf("queries: %v", s.queries)
	}
	c.add(29 * time.Second)
	got, hit, err := cached(r, "UP.Example")
	if !hit || err != nil || !slices.Equal(got, want) {
		t.Fatalf("Cached at 29s = %v, %v, %v", got, hit, err)
	}
	lookup(t, r, "up.example")
	if s.total() != 2 {
		t.Fatalf("%d queries within the TTL, want 2", s.total())
	}
	c.add(time.Second)
	if _, hit, _ := cached(r, "up.example"); hit {
		t.Fatal("hit after the TTL")
	}
	lookup(t, r, "up.example")
	if s.count("up.example", dns.TypeA) != 2 || s.count("up.example", dns.TypeAAAA) != 2 {
		t.Fatalf("after expiry: %v", s.queries)
	}
	if st := r.Stats(); st.Hits != 2 || st.Misses != 2 || st.Queries != 4 || st.Entries != 1 || st.Failures != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// expiresAfter checks that host is a cache hit for d more and not a
// nanosecond longer, advancing c by d.
func expiresAfter(t *testing.T, r *Resolver, c *clock, host string, d time.Duration) {
	t.Helper()
	c.add(d - 1)
	if _, hit, _ := cached(r, host); !hit {
		t.Fatalf("%s expired before %v", host, d)
	}
	c.add(1)
	if _, hit, _ := cached(r, host); hit {
		t.Fatalf("%s outlived %v", host, d)
	}
}

func TestTTLClamped(t *testing.T) {
	s := newServer(t)
	s.set("short.example", &record{a: []string{"192.0.2.1"}, ttl: 0})
	s.set("long.example", &record{a: []string{"192.0.2.2"}, ttl: 86400})
	r, c := newResolver(t, s, Config{MinTTL: 2 * time.Second, MaxTTL: time.Minute})
	lookup(t, r, "short.example")
	lookup(t, r, "long.example")
	expiresAfter(t, r, c, "short.example", 2*time.Second)            // raised to MinTTL
	expiresAfter(t, r, c, "long.example", time.Minute-2*time.Second) // cut to MaxTTL
}

func TestDefaultsClamp(t *testing.T) {
	s := newServer(t)
	s.set("long.example", &record{a: []string{"192.0.2.2"}, ttl: 86400})
	s.set("short.example", &record{a: []string{"192.0.2.1"}, ttl: 0})
	r, c := newResolver(t, s, Config{})
	lookup(t, r, "long.example")
	lookup(t, r, "short.example")
	expiresAfter(t, r, c, "short.example", time.Second)
	expiresAfter(t, r, c, "long.example", 5*time.Minute-time.Second)
}

func TestNegativeCaching(t *testing.T) {
	s := newServer(t)
	s.set("empty.example", &record{ttl: 60}) // NOERROR, no address
	r, c := newResolver(t, s, Config{})
	for _, name := range []string{"missing.example", "empty.example"} {
		_, err := r.Lookup(context.Background(), name)
		var pe *proxystatus.Error
		if !errors.As(err, &pe) || pe.Type != proxystatus.DNSError || pe.Detail != "upstream name does not resolve" {
			t.Fatalf("Lookup(%s) = %v", name, err)
		}
	}
	n := s.total()
	c.add(5*time.Second - 1)
	for _, name := range []string{"missing.example", "empty.example"} {
		if _, hit, err := cached(r, name); !hit || err == nil {
			t.Fatalf("Cached(%s) = %v, %v within the negative TTL", name, hit, err)
		}
		if _, err := r.Lookup(context.Background(), name); err == nil {
			t.Fatal("negative entry forgotten")
		}
	}
	if s.total() != n {
		t.Fatalf("%d queries within the negative TTL", s.total()-n)
	}
	c.add(1)
	if _, hit, _ := cached(r, "missing.example"); hit {
		t.Fatal("negative entry outlived NegativeTTL")
	}
	s.set("missing.example", &record{a: []string{"192.0.2.7"}, ttl: 60})
	if got := lookup(t, r, "missing.example"); !slices.Equal(got, addrs("192.0.2.7")) {
		t.Fatalf("after the negative TTL: %v", got)
	}
}

func TestCoalescing(t *testing.T) {
	s := newServer(t)
	hold := make(chan struct{})
	s.set("busy.example", &record{a: []string{"192.0.2.1"}, aaaa: []string{"2001:db8::1"}, ttl: 60, hold: hold})
	r, _ := newResolver(t, s, Config{})
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := r.Lookup(context.Background(), "busy.example")
			if err == nil && len(got) != 2 {
				err = fmt.Errorf("got %v", got)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	// Release the answer only once all 100 wait on the one call.
	sh := r.shard("busy.example")
	for {
		sh.mu.Lock()
		c := sh.inflight["busy.example"]
		w := int32(0)
		if c != nil {
			w = c.waiters.Load()
		}
		sh.mu.Unlock()
		if w == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if a, aaaa := s.count("busy.example", dns.TypeA), s.count("busy.example", dns.TypeAAAA); a != 1 || aaaa != 1 {
		t.Fatalf("100 concurrent lookups sent %d A and %d AAAA queries, want 1 and 1", a, aaaa)
	}
}

func TestCallerGivesUpOthersGetAnswer(t *testing.T) {
	s := newServer(t)
	hold := make(chan struct{})
	s.set("slow.example", &record{a: []string{"192.0.2.1"}, ttl: 60, hold: hold})
	r, _ := newResolver(t, s, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := r.Lookup(ctx, "slow.example")
		done <- err
	}()
	for s.count("slow.example", dns.TypeA) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled lookup succeeded")
	}
	close(hold)
	if got := lookup(t, r, "slow.example"); !slices.Equal(got, addrs("192.0.2.1")) {
		t.Fatalf("Lookup after a caller gave up = %v", got)
	}
	if s.count("slow.example", dns.TypeA) != 1 {
		t.Fatalf("%d A queries, want 1", s.count("slow.example", dns.TypeA))
	}
}

func TestLocalNames(t *testing.T) {
	s := newServer(t)
	hosts := writeFile(t, "hosts", "# comment\n10.1.2.3  myhost MyAlias.example.  # trailing\nfe80::1%lo  zoned\n::1 v6host\nbad-address nothing\n10.1.2.4 myhost\n")
	r, c := newResolver(t, s, Config{HostsFile: hosts})
	tests := []struct {
		host string
		want []netip.Addr
	}{
		{"myhost", addrs("10.1.2.3", "10.1.2.4")},
		{"MYHOST.", addrs("10.1.2.3", "10.1.2.4")},
		{"myalias.example", addrs("10.1.2.3")},
		{"v6host", addrs("::1")},
		{"localhost", addrs("127.0.0.1", "::1")},
		{"LocalHost.", addrs("127.0.0.1", "::1")},
		{"api.localhost", addrs("127.0.0.1", "::1")},
		{"192.0.2.9", addrs("192.0.2.9")},
		{"::ffff:192.0.2.9", addrs("192.0.2.9")},
		{"2001:db8::5", addrs("2001:db8::5")},
	}
	for _, tt := range tests {
		if got := lookup(t, r, tt.host); !slices.Equal(got, tt.want) {
			t.Errorf("Lookup(%s) = %v, want %v", tt.host, got, tt.want)
		}
		if got, hit, err := cached(r, tt.host); !hit || err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Cached(%s) = %v, %v, %v", tt.host, got, hit, err)
		}
	}
	for _, host := range []string{"x.invalid", "INVALID", "a.b.invalid."} {
		_, hit, err := cached(r, host)
		if _, lerr := r.Lookup(context.Background(), host); !hit || err == nil || lerr == nil {
			t.Errorf("%s resolved: %v %v %v", host, hit, err, lerr)
		}
	}
	if s.total() != 0 {
		t.Fatalf("local names sent %d queries", s.total())
	}

	// The hosts file changes: seen after the recheck interval and the cached
	// entry's life, without a restart.
	if err := os.WriteFile(hosts, []byte("10.9.9.9 myhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(hosts, later, later); err != nil {
		t.Fatal(err)
	}
	c.add(hostsRecheck)
	if got := lookup(t, r, "myhost"); !slices.Equal(got, addrs("10.9.9.9")) {
		t.Errorf("after the hosts file changed: %v", got)
	}
	// A name the file no longer has goes to DNS.
	s.set("myalias.example", &record{a: []string{"192.0.2.50"}, ttl: 60})
	if got := lookup(t, r, "myalias.example"); !slices.Equal(got, addrs("192.0.2.50")) {
		t.Errorf("after removal from the hosts file: %v", got)
	}
}

func TestNoHostsFileStillLocalhost(t *testing.T) {
	s := newServer(t)
	r, _ := newResolver(t, s, Config{HostsFile: filepath.Join(t.TempDir(), "absent")})
	if got := lookup(t, r, "localhost"); !slices.Equal(got, addrs("127.0.0.1", "::1")) {
		t.Fatalf("localhost without a hosts file = %v", got)
	}
	if s.total() != 0 {
		t.Fatal("localhost was queried")
	}
}

func TestFamilyOrder(t *testing.T) {
	s := newServer(t)
	s.set("dual.example", &record{a: []string{"192.0.2.1"}, aaaa: []string{"2001:db8::1", "2001:db8::2"}, ttl: 60})
	s.set("v6only.example", &record{aaaa: []string{"2001:db8::3"}, ttl: 60})
	r4, _ := newResolver(t, s, Config{})
	r6, _ := newResolver(t, s, Config{PreferIPv6: true})
	if got := lookup(t, r4, "dual.example"); !slices.Equal(got, addrs("192.0.2.1", "2001:db8::1", "2001:db8::2")) {
		t.Errorf("IPv4 first: %v", got)
	}
	if got := lookup(t, r6, "dual.example"); !slices.Equal(got, addrs("2001:db8::1", "2001:db8::2", "192.0.2.1")) {
		t.Errorf("IPv6 first: %v", got)
	}
	if got := lookup(t, r4, "v6only.example"); !slices.Equal(got, addrs("2001:db8::3")) {
		t.Errorf("AAAA only: %v", got)
	}
}

func TestCNAMEAndTTL(t *testing.T) {
	s := newServer(t)
	s.set("alias.example", &record{cname: "real.example", a: []string{"192.0.2.8"}, ttl: 10})
	r, c := newResolver(t, s, Config{})
	if got := lookup(t, r, "alias.example"); !slices.Equal(got, addrs("192.0.2.8")) {
		t.Fatalf("through a CNAME: %v", got)
	}
	expiresAfter(t, r, c, "alias.example", 10*time.Second) // the smallest TTL on the chain
}

func TestTruncatedRetriedOverTCP(t *testing.T) {
	s := newServer(t)
	s.set("big.example", &record{a: []string{"192.0.2.1"}, ttl: 60, trunc: true})
	r, _ := newResolver(t, s, Config{})
	if got := lookup(t, r, "big.example"); !slices.Equal(got, addrs("192.0.2.1")) {
		t.Fatalf("Lookup = %v", got)
	}
	if s.tcp.Load() == 0 {
		t.Fatal("no TCP query after a truncated answer")
	}
}

func TestServerFailureAndTimeout(t *testing.T) {
	s := newServer(t)
	s.set("servfail.example", &record{rcode: dns.RcodeServerFailure})
	s.set("silent.example", &record{silent: true})
	r, c := newResolver(t, s, Config{Timeout: 50 * time.Millisecond})
	for _, name := range []string{"servfail.example", "silent.example"} {
		_, err := r.Lookup(context.Background(), name)
		var pe *proxystatus.Error
		if !errors.As(err, &pe) || pe.Type != proxystatus.DNSError {
			t.Fatalf("Lookup(%s) = %v", name, err)
		}
		if _, hit, _ := cached(r, name); !hit {
			t.Fatalf("failure for %s not cached", name)
		}
	}
	c.add(5 * time.Second)
	if _, hit, _ := cached(r, "servfail.example"); hit {
		t.Fatal("failure outlived NegativeTTL")
	}
	if r.Stats().Failures != 2 {
		t.Errorf("Stats = %+v", r.Stats())
	}
}

func TestResolvConfSearch(t *testing.T) {
	s := newServer(t)
	s.set("squid.svc.cluster.local", &record{a: []string{"10.0.0.5"}, ttl: 60})
	s.set("proxy.corp.example", &record{a: []string{"10.0.0.6"}, ttl: 60})
	host, port, _ := net.SplitHostPort(s.addr)
	conf := writeFile(t, "resolv.conf", "nameserver "+host+"\nsearch svc.cluster.local cluster.local\noptions ndots:2 timeout:1 attempts:1\n")
	r, _ := newResolver(t, s, Config{ResolvConf: conf, port: port, Timeout: time.Second})
	// One dot, below ndots: the search list first.
	if got := lookup(t, r, "squid"); !slices.Equal(got, addrs("10.0.0.5")) {
		t.Fatalf("squid = %v", got)
	}
	if s.count("squid.", dns.TypeA) != 0 {
		t.Error("a short name was tried as is before the search list")
	}
	// Two dots: as is first.
	if got := lookup(t, r, "proxy.corp.example"); !slices.Equal(got, addrs("10.0.0.6")) {
		t.Fatalf("proxy.corp.example = %v", got)
	}
	if s.count("proxy.corp.example.svc.cluster.local", dns.TypeA) != 0 {
		t.Error("a name with ndots dots went through the search list first")
	}
}

func TestNewBadServer(t *testing.T) {
	for _, srv := range []string{"127.0.0.1", "host", ":53"} {
		if _, err := New(Config{Server: srv}); err == nil {
			t.Errorf("New(Server: %q) accepted", srv)
		}
	}
}

func TestBounded(t *testing.T) {
	s := newServer(t)
	s.setAny(&record{a: []string{"192.0.2.1"}, ttl: 3600})
	r, _ := newResolver(t, s, Config{MaxEntries: numShards * 16})
	for i := range 1500 {
		lookup(t, r, fmt.Sprintf("n%d.example", i))
	}
	if e := r.Stats().Entries; e > numShards*16 {
		t.Fatalf("%d entries cached, bound %d", e, numShards*16)
	}
}

// TestConcurrent mixes Cached, Lookup and expiry; run with -race.
func TestConcurrent(t *testing.T) {
	s := newServer(t)
	s.setAny(&record{a: []string{"192.0.2.1"}, ttl: 1})
	r, c := newResolver(t, s, Config{})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dst [4]netip.Addr
			for i := range 300 {
				name := fmt.Sprintf("h%d.example", (g+i)%7)
				if g%2 == 0 {
					_, _, _ = r.Cached(dst[:0], []byte(name))
				} else if _, err := r.Lookup(context.Background(), name); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					c.add(time.Second)
					_ = r.Stats()
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkCachedHit(b *testing.B) {
	s := newServer(b)
	s.set("proxy.example.com", &record{a: []string{"192.0.2.1"}, aaaa: []string{"2001:db8::1"}, ttl: 3600})
	r, err := New(Config{Server: s.addr, HostsFile: writeFile(b, "hosts", "")}) // the real clock
	if err != nil {
		b.Fatal(err)
	}
	lookup(b, r, "proxy.example.com")
	host := []byte("proxy.example.com")
	var dst [8]netip.Addr
	b.ReportAllocs()
	for b.Loop() {
		if _, hit, _ := r.Cached(dst[:0], host); !hit {
			b.Fatal("miss")
		}
	}
}

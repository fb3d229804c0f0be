// Package dnscache resolves upstream proxy names for proxyto: a cache that
// honours the records' TTL (clamped to [MinTTL, MaxTTL]), remembers failures
// for NegativeTTL, and turns concurrent lookups of one name into one query.
//
// Queries go to Config.Server, or to the servers, search list and ndots of
// /etc/resolv.conf, with github.com/miekg/dns (the standard resolver cannot
// report TTLs). Before any query, names are looked up in /etc/hosts (re-read
// when it changes), and "localhost" and names under it answer with the
// loopback addresses (RFC 6761 §6.3) even when the hosts file lacks them, as
// in a scratch container; so tests and users can name "localhost" as an
// upstream. IP literals are returned as they are, and names under "invalid"
// fail at once (RFC 6761 §6.4).
//
//	event loop                          dial worker
//	─────────────────────────────────   ──────────────────────────────────
//	addrs, hit, err := r.Cached(dst,    addrs, err := r.Lookup(ctx, host)
//	    host)                             cache → hosts → one query per name
//	hit: dial addrs (or fail with err)    (A and AAAA, concurrent callers
//	miss: hand the name to a worker        wait for the same answer)
//
// A cache hit makes no system call and no allocation. Every method is safe
// for concurrent use.
package dnscache

import (
	"context"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/proxyto/proxyto/proxystatus"
)

// Config configures New. The zero value of each field means its default.
type Config struct {
	// Server is the DNS server ("host:port") to send every query to; its
	// answers are not searched (names are taken as fully qualified).
	// Default: the nameservers, search list and ndots of ResolvConf.
	Server string
	// MinTTL and MaxTTL clamp the TTL of answers. Defaults 1s and 5m.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long a failed lookup (no such name, no address,
	// server failure, timeout) is remembered. Default 5s.
	NegativeTTL time.Duration
	// PreferIPv6 puts IPv6 addresses before IPv4 ones. Default false:
	// IPv4 first.
	PreferIPv6 bool
	// Timeout bounds one query to one server; a lookup tries each server in
	// turn, Attempts times. Default: resolv.conf's timeout (5s), or 2s with
	// Server.
	Timeout time.Duration
	// LookupTimeout bounds a whole lookup, search list included. Default 10s.
	LookupTimeout time.Duration
	// MaxEntries bounds the cached names. Default 16384.
	MaxEntries int
	// HostsFile and ResolvConf are the system files read. Defaults
	// /etc/hosts and /etc/resolv.conf.
	HostsFile, ResolvConf string
	// Now returns monotonic nanoseconds. nil: the process clock. Tests pass
	// a fake clock.
	Now func() int64

	// port replaces resolv.conf's port 53, so that tests can run the
	// resolv.conf path against a server on a free port.
	port string
}

// numShards splits the cache so that event loops reading different names do
// not share a lock word.
const numShards = 64

// Resolver is the cache and its resolver. Build it with New.
type Resolver struct {
	cfg    Config
	now    func() int64
	seed   maphash.Seed
	shards [numShards]shard
	perCap int // entries per shard

	hosts hostsFile
	sys   sysConf

	queries  atomic.Uint64 // DNS messages sent
	failures atomic.Uint64 // lookups that ended in a negative entry
}

// shard is one part of the cache. Entries are immutable once stored.
type shard struct {
	mu       sync.RWMutex
	m        map[string]*entry
	inflight map[string]*call
	hits     atomic.Uint64
	misses   atomic.Uint64
	_        [64]byte // keep neighbouring shards' counters off this cache line
}

// entry is one cached answer: addresses or an error, until exp.
type entry struct {
	addrs []netip.Addr
	err   *proxystatus.Error
	exp   int64
}

// call is one lookup in flight; waiters block on done.
type call struct {
	done    chan struct{}
	e       *entry
	waiters atomic.Int32 // callers blocked on done, for tests
}

// Errors a lookup returns, as the engine answers them (502 dns_error). The
// values are shared: do not modify them.
var (
	errNoSuchHost = proxystatus.New(proxystatus.DNSError, "upstream name does not resolve")
	errTimeout    = proxystatus.New(proxystatus.DNSError, "upstream name lookup timed out")
)

// New returns a Resolver. It fails only for a malformed Server address.
func New(cfg Config) (*Resolver, error) {
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = time.Second
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 5 * time.Minute
	}
	if cfg.MaxTTL < cfg.MinTTL {
		cfg.MaxTTL = cfg.MinTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = 5 * time.Second
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 10 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 16384
	}
	if cfg.HostsFile == "" {
		cfg.HostsFile = "/etc/hosts"
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	r := &Resolver{cfg: cfg, now: cfg.Now, seed: maphash.MakeSeed()}
	if r.now == nil {
		start := time.Now()
		r.now = func() int64 { return int64(time.Since(start)) }
	}
	r.perCap = max(cfg.MaxEntries/numShards, 16)
	for i := range r.shards {
		r.shards[i].m = map[string]*entry{}
		r.shards[i].inflight = map[string]*call{}
	}
	r.hosts.path = cfg.HostsFile
	if err := r.sys.init(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// maxName is the longest name looked up: 253 bytes plus a final dot.
const maxName = 254

// Cached answers from the cache alone, without blocking, a system call or
// an allocation (when dst has room): it is meant for the event loop. hit is
// false when only Lookup can tell. On a hit, the addresses are appended to
// dst (IPv4 first unless PreferIPv6), or err is the cached failure, a shared
// *proxystatus.Error of type DNSError. IP literals and names under
// "invalid" are hits.
func (r *Resolver) Cached(dst []netip.Addr, host []byte) (addrs []netip.Addr, hit bool, err error) {
	if a, ok := literal(host); ok {
		return append(dst, a), true, nil
	}
	var buf [maxName]byte
	key, ok := fold(&buf, host)
	if !ok || isInvalid(key) {
		return dst, true, errNoSuchHost
	}
	sh := &r.shards[maphash.Bytes(r.seed, key)%numShards]
	e := sh.get(key)
	if e == nil || e.exp <= r.now() {
		// A miss is counted by the Lookup that follows it.
		return dst, false, nil
	}
	sh.hits.Add(1)
	if e.err != nil {
		return dst, true, e.err
	}
	return append(dst, e.addrs...), true, nil
}

// Lookup returns host's addresses (IPv4 first unless PreferIPv6), from the
// cache when it can, else from the hosts file, the loopback rule or DNS. It
// blocks: call it off the event loops. Concurrent lookups of one name share
// one query; one caller giving up (ctx) does not cancel it for the others.
// Errors are *proxystatus.Error values of type DNSError. The slice is the
// caller's.
func (r *Resolver) Lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, hit, err := r.Cached(nil, []byte(host))
	if hit {
		return addrs, err
	}
	var buf [maxName]byte
	folded, _ := fold(&buf, []byte(host)) // Cached refused what fold refuses
	key := string(folded)
	sh := r.shard(key)
	sh.misses.Add(1)
	if e := r.local(key); e != nil {
		sh.put(r, key, e)
		return r.result(e)
	}

	sh.mu.Lock()
	if e := sh.m[key]; e != nil && e.exp > r.now() {
		sh.mu.Unlock()
		return r.result(e)
	}
	c := sh.inflight[key]
	if c == nil {
		c = &call{done: make(chan struct{})}
		sh.inflight[key] = c
		go r.resolve(sh, key, c)
	}
	c.waiters.Add(1)
	sh.mu.Unlock()

	select {
	case <-c.done:
		return r.result(c.e)
	case <-ctx.Done():
		return nil, proxystatus.New(proxystatus.DNSError, "upstream name lookup timed out")
	}
}

// result copies an entry out for a Lookup caller.
func (r *Resolver) result(e *entry) ([]netip.Addr, error) {
	if e.err != nil {
		return nil, e.err
	}
	return append([]netip.Addr(nil), e.addrs...), nil
}

// resolve runs one lookup for every caller waiting on c, with its own
// deadline, and caches the answer.
func (r *Resolver) resolve(sh *shard, key string, c *call) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LookupTimeout)
	defer cancel()
	e := r.query(ctx, key)
	if e.err != nil {
		r.failures.Add(1)
	}
	sh.mu.Lock()
	sh.store(r, key, e)
	delete(sh.inflight, key)
	sh.mu.Unlock()
	c.e = e
	close(c.done)
}

// local answers from the hosts file or the loopback rule, or returns nil.
func (r *Resolver) local(name string) *entry {
	name = strings.TrimSuffix(name, ".")
	if addrs := r.hosts.lookup(name, r.now()); len(addrs) > 0 {
		return &entry{addrs: r.order(addrs), exp: r.now() + int64(hostsRecheck)}
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return &entry{addrs: r.order(loopback[:]), exp: r.now() + int64(hostsRecheck)}
	}
	return nil
}

var loopback = [2]netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}

// order returns addrs with the preferred family first, keeping the order
// within each family. It returns a new slice.
func (r *Resolver) order(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	firstIs4 := !r.cfg.PreferIPv6
	for _, want4 := range [2]bool{firstIs4, !firstIs4} {
		for _, a := range addrs {
			if a.Is4() == want4 {
				out = append(out, a)
			}
		}
	}
	return out
}

// shard returns the shard of a folded name (the same one Cached finds:
// maphash.String and maphash.Bytes agree).
func (r *Resolver) shard(key string) *shard {
	return &r.shards[maphash.String(r.seed, key)%numShards]
}

// get returns the entry for key, fresh or not.
func (sh *shard) get(key []byte) *entry {
	sh.mu.RLock()
	e := sh.m[string(key)]
	sh.mu.RUnlock()
	return e
}

// put stores e under the shard's lock.
func (sh *shard) put(r *Resolver, key string, e *entry) {
	sh.mu.Lock()
	sh.store(r, key, e)
	sh.mu.Unlock()
}

// store adds e; the caller holds the lock. A full shard first drops its
// expired entries, then arbitrary ones, so memory stays bounded whatever
// names clients send.
func (sh *shard) store(r *Resolver, key string, e *entry) {
	if _, ok := sh.m[key]; !ok && len(sh.m) >= r.perCap {
		now := r.now()
		for k, old := range sh.m {
			if old.exp <= now {
				delete(sh.m, k)
			}
		}
		for k := range sh.m {
			if len(sh.m) < r.perCap {
				break
			}
			delete(sh.m, k)
		}
	}
	sh.m[key] = e
}

// Stats is a snapshot of the resolver's counters.
type Stats struct {
	Hits     uint64 // names the cache answered (Cached or Lookup)
	Misses   uint64 // Lookups that needed the hosts file or DNS
	Queries  uint64 // DNS messages sent
	Failures uint64 // lookups cached as failures
	Entries  int    // names cached now, fresh or not
}

// Stats returns the counters, for metrics at scrape time.
func (r *Resolver) Stats() Stats {
	var s Stats
	for i := range r.shards {
		sh := &r.shards[i]
		s.Hits += sh.hits.Load()
		s.Misses += sh.misses.Load()
		sh.mu.RLock()
		s.Entries += len(sh.m)
		sh.mu.RUnlock()
	}
	s.Queries = r.queries.Load()
	s.Failures = r.failures.Load()
	return s
}

// literal parses host as an IP address without allocating. Only hosts that
// look like one (digits and dots, or a colon) are parsed.
func literal(host []byte) (netip.Addr, bool) {
	if len(host) == 0 || len(host) > 64 {
		return netip.Addr{}, false
	}
	v6, v4 := false, true
	for _, c := range host {
		switch {
		case c == ':':
			v6 = true
		case c != '.' && (c < '0' || c > '9'):
			v4 = false
		}
	}
	if !v6 && !v4 {
		return netip.Addr{}, false
	}
	// The string aliases host only for the call: ParseAddr keeps nothing of
	// it on success (a zone is interned as a copy), and the error, which
	// would, is dropped.
	a, err := netip.ParseAddr(unsafe.String(&host[0], len(host)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// fold writes host in lower case into buf. ok is false for an empty or
// over-long name.
func fold(buf *[maxName]byte, host []byte) (key []byte, ok bool) {
	if len(host) == 0 || len(host) > maxName {
		return nil, false
	}
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(host)], true
}

// isInvalid reports whether a folded name is "invalid" or under it, with or
// without a final dot.
func isInvalid(name []byte) bool {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	const tld = "invalid"
	if len(name) < len(tld) || string(name[len(name)-len(tld):]) != tld {
		return false
	}
	return len(name) == len(tld) || name[len(name)-len(tld)-1] == '.'
}

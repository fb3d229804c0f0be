package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// ways is how many neighbouring slots one key may live in.
const ways = 4

// verdict is one remembered bcrypt result. It is immutable once published.
type verdict struct {
	key [sha256.Size]byte // salted digest of user:password
	ok  bool
	exp int64 // expiry, in the cache's clock
}

// verdictCache is a fixed-size, lock-free table of bcrypt verdicts keyed by
// salted credential digests. Its memory is bounded by its slot count whatever
// is offered to it. Reads (get) never block or allocate, so they may run on
// an event loop; writes (put) allocate one verdict and run off the loops.
//
// Replacement keeps the credentials that matter: a success may replace any
// slot of its set (the one expiring first), a failure only an empty, expired
// or failure slot, so a flood of wrong credentials cannot push out the
// verdicts of real users. Because the digests are salted per process, an
// attacker cannot aim keys at one set either.
type verdictCache struct {
	slots   []atomic.Pointer[verdict]
	mask    uint64
	okTTL   int64
	failTTL int64
	start   time.Time
	now     func() int64 // nanoseconds on the cache's clock; tests replace it
}

// newVerdictCache returns a cache of at least size slots (a power of two, at
// least ways). now may be nil for the monotonic clock.
func newVerdictCache(size int, okTTL, failTTL time.Duration, now func() int64) *verdictCache {
	n := ways
	for n < size {
		n <<= 1
	}
	c := &verdictCache{
		slots:   make([]atomic.Pointer[verdict], n),
		mask:    uint64(n - 1),
		okTTL:   int64(okTTL),
		failTTL: int64(failTTL),
		start:   time.Now(),
		now:     now,
	}
	if c.now == nil {
		c.now = func() int64 { return int64(time.Since(c.start)) }
	}
	return c
}

// get returns the remembered verdict for key; known is false when there is
// none or it expired.
func (c *verdictCache) get(key *[sha256.Size]byte) (ok, known bool) {
	base := binary.LittleEndian.Uint64(key[:8])
	now := c.now()
	for i := range uint64(ways) {
		v := c.slots[(base+i)&c.mask].Load()
		if v != nil && v.exp > now && subtle.ConstantTimeCompare(v.key[:], key[:]) == 1 {
			return v.ok, true
		}
	}
	return false, false
}

// put remembers a verdict for key, or drops it when its set is full of live
// successes and it is a failure.
func (c *verdictCache) put(key *[sha256.Size]byte, ok bool) {
	now := c.now()
	ttl := c.failTTL
	if ok {
		ttl = c.okTTL
	}
	nv := &verdict{key: *key, ok: ok, exp: now + ttl}
	base := binary.LittleEndian.Uint64(key[:8])
	for i := range uint64(ways) {
		s := &c.slots[(base+i)&c.mask]
		if v := s.Load(); v != nil && v.key == *key {
			s.Store(nv)
			return
		}
	}
	var victim *atomic.Pointer[verdict]
	var victimExp int64
	victimFail := false
	for i := range uint64(ways) {
		s := &c.slots[(base+i)&c.mask]
		v := s.Load()
		switch {
		case v == nil || v.exp <= now:
			s.Store(nv)
			return
		case !v.ok && (!victimFail || v.exp < victimExp):
			victim, victimExp, victimFail = s, v.exp, true
		case v.ok && ok && !victimFail && (victim == nil || v.exp < victimExp):
			victim, victimExp = s, v.exp
		}
	}
	if victim != nil {
		victim.Store(nv)
	}
}

// len returns the number of live entries, for tests.
func (c *verdictCache) len() (ok, fail int) {
	now := c.now()
	for i := range c.slots {
		if v := c.slots[i].Load(); v != nil && v.exp > now {
			if v.ok {
				ok++
			} else {
				fail++
			}
		}
	}
	return ok, fail
}

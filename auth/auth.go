// Package auth checks proxyto's own client authentication: HTTP Basic
// credentials in Proxy-Authorization, against a user list given on the
// command line, an htpasswd file of bcrypt hashes, or both (docs/behaviour.md, "Operation").
//
// A *Basic implements engine.Authenticator. Cached answers on an event loop
// without blocking or allocating: user-list credentials are compared in
// constant time against digests precomputed by New, and htpasswd credentials
// are answered from a bounded cache of earlier bcrypt verdicts. Verify runs
// bcrypt and fills that cache; the engine calls it off the event loops.
//
// When usernames carry a route and session ("alice-route-eu-session-s1"),
// the engine decodes the header once (DecodeBasic), splits the username
// (routes.ParseUsername) and checks the user part with CachedUser and
// VerifyUser. A Holder wraps a Basic so that SIGHUP can reload the htpasswd
// file, keeping the old credentials when the new file fails to load.
//
// Nothing here logs, and no error holds a password, a hash or a header value.
package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Errors returned by New. They name the entry or line at fault, never its
// contents.
var (
	// ErrNoCredentials occurs when New is given neither users nor an htpasswd
	// file: an authenticator that admits no one is a configuration mistake.
	ErrNoCredentials = errors.New("proxyto: auth: no users and no htpasswd file given")
	// ErrBadUser occurs when a user-list entry is not "user:password" with a
	// non-empty user name.
	ErrBadUser = errors.New("proxyto: auth: user entry is not user:password with a non-empty user")
	// ErrHtpasswdSyntax occurs when an htpasswd line is not "user:hash" with a
	// non-empty user name.
	ErrHtpasswdSyntax = errors.New("proxyto: auth: htpasswd line is not user:hash")
	// ErrHtpasswdNotBcrypt occurs when an htpasswd hash is not a well-formed
	// bcrypt hash ($2a$, $2b$ or $2y$); MD5, SHA-1, crypt and plain-text
	// entries are refused rather than silently never matching.
	ErrHtpasswdNotBcrypt = errors.New("proxyto: auth: htpasswd hash is not bcrypt ($2a$, $2b$ or $2y$)")
	// ErrHtpasswdDuplicate occurs when an htpasswd file names a user twice.
	ErrHtpasswdDuplicate = errors.New("proxyto: auth: htpasswd names a user twice")
	// ErrHtpasswdEmpty occurs when an htpasswd file holds no entry.
	ErrHtpasswdEmpty = errors.New("proxyto: auth: htpasswd file has no entries")
)

// Options configures New. The zero value of each field means its default.
type Options struct {
	// Users are "user:password" pairs; the password is everything after the
	// first colon and may be empty or hold colons. Default none.
	Users []string
	// HtpasswdFile is the path of an htpasswd file with bcrypt entries.
	// Default none.
	HtpasswdFile string
	// CacheSize bounds the remembered bcrypt verdicts (rounded up to a power
	// of two). Default 4096.
	CacheSize int
	// SuccessTTL is how long a successful bcrypt verdict is remembered.
	// Default 10 minutes.
	SuccessTTL time.Duration
	// FailureTTL is how long a failed bcrypt verdict is remembered; failures
	// never evict live successes. Default 5 seconds.
	FailureTTL time.Duration
}

// maxCredentials caps the decoded user:password length. Longer credentials
// are refused without hashing; bcrypt reads only 72 password bytes anyway.
const maxCredentials = 1024

// saltLen is the length of the per-process salt mixed into every digest, so
// that neither the digests in memory nor the cache's slot choice can be
// predicted from outside.
const saltLen = 16

// Basic checks HTTP Basic client credentials. Build it with New; it is safe
// for concurrent use.
type Basic struct {
	salt  [saltLen]byte
	users [][sha256.Size]byte // digest(user:password) per user-list entry

	htpasswd map[string][]byte // user → bcrypt hash; nil without a file
	dummy    []byte            // bcrypt hash compared for unknown users, so they cost the same
	cache    *verdictCache     // bcrypt verdicts; nil without a file
	sem      chan struct{}     // bounds concurrent bcrypt runs

	ids   map[string]int // user name → metric ID (user.go)
	names []string       // user names by ID
}

// New returns a Basic checking against opts.Users and opts.HtpasswdFile.
// Each user-list entry's digest is computed here, once.
func New(opts Options) (*Basic, error) {
	if len(opts.Users) == 0 && opts.HtpasswdFile == "" {
		return nil, ErrNoCredentials
	}
	b := &Basic{}
	if _, err := rand.Read(b.salt[:]); err != nil {
		return nil, fmt.Errorf("proxyto: auth: salt: %w", err)
	}
	for i, u := range opts.Users {
		user, _, ok := strings.Cut(u, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%w (--auth-users entry %d)", ErrBadUser, i+1)
		}
		b.users = append(b.users, b.digest([]byte(u)))
	}
	if opts.HtpasswdFile != "" {
		f, err := os.Open(opts.HtpasswdFile)
		if err != nil {
			return nil, fmt.Errorf("proxyto: auth: htpasswd: %w", err)
		}
		b.htpasswd, err = parseHtpasswd(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%w (file %s)", err, opts.HtpasswdFile)
		}
		if err := b.initBcrypt(opts); err != nil {
			return nil, err
		}
	}
	b.indexUsers(opts.Users)
	return b, nil
}

// initBcrypt prepares the verdict cache, the bcrypt limiter and the dummy
// hash used to make unknown users cost one bcrypt like known ones.
func (b *Basic) initBcrypt(opts Options) error {
	cost := bcrypt.MinCost
	for _, h := range b.htpasswd {
		if c, err := bcrypt.Cost(h); err == nil && c > cost {
			cost = c
		}
	}
	var pw [32]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return fmt.Errorf("proxyto: auth: dummy password: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword(pw[:], cost)
	if err != nil {
		return fmt.Errorf("proxyto: auth: dummy hash: %w", err)
	}
	b.dummy = dummy
	size := opts.CacheSize
	if size <= 0 {
		size = 4096
	}
	okTTL, failTTL := opts.SuccessTTL, opts.FailureTTL
	if okTTL <= 0 {
		okTTL = 10 * time.Minute
	}
	if failTTL <= 0 {
		failTTL = 5 * time.Second
	}
	b.cache = newVerdictCache(size, okTTL, failTTL, nil)
	b.sem = make(chan struct{}, runtime.GOMAXPROCS(0))
	return nil
}

// Cached implements engine.Authenticator. It never blocks and, for a header
// it can parse, never allocates. Malformed or user-list credentials are
// always known; htpasswd credentials are known once Verify has seen them
// (until their cache entry expires or is evicted).
func (b *Basic) Cached(value []byte) (ok, known bool) {
	var buf [saltLen + maxCredentials]byte
	cred, good := b.decode(value, &buf)
	if !good {
		return false, true
	}
	return b.cached(cred)
}

// cached answers for salt||user:password from the user list or the verdict
// cache.
func (b *Basic) cached(cred []byte) (ok, known bool) {
	sum := sha256.Sum256(cred)
	if b.matchUsers(&sum) {
		return true, true
	}
	if b.cache == nil {
		return false, true
	}
	return b.cache.get(&sum)
}

// Verify implements engine.Authenticator. It may block: it runs bcrypt for
// htpasswd users (at most GOMAXPROCS at once) and remembers the verdict for
// Cached.
func (b *Basic) Verify(value []byte) bool {
	var buf [saltLen + maxCredentials]byte
	cred, good := b.decode(value, &buf)
	if !good {
		return false
	}
	return b.verify(cred)
}

// verify answers for salt||user:password, running bcrypt when needed.
func (b *Basic) verify(cred []byte) bool {
	sum := sha256.Sum256(cred)
	if b.matchUsers(&sum) {
		return true
	}
	if b.cache == nil {
		return false
	}
	if ok, known := b.cache.get(&sum); known {
		return ok
	}
	userPass := cred[saltLen:]
	user, pass, _ := bytes.Cut(userPass, []byte{':'})
	hash, found := b.htpasswd[string(user)]
	if !found {
		hash = b.dummy
	}
	b.sem <- struct{}{}
	ok := bcrypt.CompareHashAndPassword(hash, pass) == nil && found
	<-b.sem
	b.cache.put(&sum, ok)
	return ok
}

// matchUsers reports whether sum equals any user-list digest. It compares
// against every entry in constant time, with no early exit.
func (b *Basic) matchUsers(sum *[sha256.Size]byte) bool {
	match := 0
	for i := range b.users {
		match |= subtle.ConstantTimeCompare(sum[:], b.users[i][:])
	}
	return match == 1
}

// digest returns the salted SHA-256 of user:password, as decode lays it out.
func (b *Basic) digest(userPass []byte) [sha256.Size]byte {
	buf := make([]byte, 0, saltLen+len(userPass))
	buf = append(append(buf, b.salt[:]...), userPass...)
	return sha256.Sum256(buf)
}

// decode parses a Proxy-Authorization value and writes salt||user:password
// into buf, returning that prefix of buf (see DecodeBasic for what is good).
func (b *Basic) decode(value []byte, buf *[saltLen + maxCredentials]byte) (cred []byte, good bool) {
	n, good := decodeBasic(value, buf[saltLen:])
	if !good {
		return nil, false
	}
	copy(buf[:saltLen], b.salt[:])
	return buf[:saltLen+n], true
}

// decodeBasic parses a Proxy-Authorization value "Basic <token>" (scheme in
// any case, spaces and tabs around and between) and decodes the token into
// dst, returning its length. good is false for another scheme, bad base64, a
// missing colon, an empty user or credentials longer than dst.
func decodeBasic(value, dst []byte) (n int, good bool) {
	v := trimOWS(value)
	const scheme = "basic"
	if len(v) <= len(scheme) || !isOWS(v[len(scheme)]) || !bytes.EqualFold(v[:len(scheme)], []byte(scheme)) {
		return 0, false
	}
	tok := trimOWS(v[len(scheme):])
	// RawStdEncoding after trimming padding accepts both padded and
	// unpadded tokens; reject what the decoder would silently skip.
	for len(tok) > 0 && tok[len(tok)-1] == '=' {
		tok = tok[:len(tok)-1]
	}
	if len(tok) == 0 || base64.RawStdEncoding.DecodedLen(len(tok)) > min(len(dst), maxCredentials) ||
		bytes.IndexByte(tok, '\r') >= 0 || bytes.IndexByte(tok, '\n') >= 0 {
		return 0, false
	}
	n, err := base64.RawStdEncoding.Decode(dst, tok)
	if err != nil {
		return 0, false
	}
	if colon := bytes.IndexByte(dst[:n], ':'); colon <= 0 {
		return 0, false
	}
	return n, true
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

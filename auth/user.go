package auth

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// MaxCredentials is the longest decoded user:password accepted, and the size
// a DecodeBasic buffer needs.
const MaxCredentials = maxCredentials

// DecodeBasic parses a Proxy-Authorization value "Basic <token>" (scheme in
// any case) and decodes it into dst, returning slices of dst: the user (up
// to the first colon) and the password. ok is false for another scheme, bad
// base64, a missing colon, an empty user, or credentials longer than dst or
// MaxCredentials. It never allocates: the engine passes a buffer it owns
// and parses the user with routes.ParseUsername.
func DecodeBasic(value, dst []byte) (user, pass []byte, ok bool) {
	n, ok := decodeBasic(value, dst)
	if !ok {
		return nil, nil, false
	}
	up := dst[:n]
	colon := bytes.IndexByte(up, ':')
	return up[:colon], up[colon+1:], true
}

// CachedUser is Cached for credentials already decoded (DecodeBasic) and
// with the route and session parts taken off the user name: it answers
// whether user with pass is admitted, without blocking, when it can. A user
// that is empty or holds a colon is refused.
func (b *Basic) CachedUser(user, pass []byte) (ok, known bool) {
	var buf [saltLen + maxCredentials]byte
	cred, good := b.join(user, pass, &buf)
	if !good {
		return false, true
	}
	return b.cached(cred)
}

// VerifyUser is Verify for decoded credentials (see CachedUser). It may
// block on bcrypt: call it off the event loops.
func (b *Basic) VerifyUser(user, pass []byte) bool {
	var buf [saltLen + maxCredentials]byte
	cred, good := b.join(user, pass, &buf)
	if !good {
		return false
	}
	return b.verify(cred)
}

// join writes salt||user:pass into buf, as decode does.
func (b *Basic) join(user, pass []byte, buf *[saltLen + maxCredentials]byte) ([]byte, bool) {
	if len(user) == 0 || len(user)+1+len(pass) > maxCredentials || bytes.IndexByte(user, ':') >= 0 {
		return nil, false
	}
	n := copy(buf[:], b.salt[:])
	n += copy(buf[n:], user)
	buf[n] = ':'
	n++
	n += copy(buf[n:], pass)
	return buf[:n], true
}

// indexUsers gives every configured user name (user list and htpasswd) an
// ID, in name order.
func (b *Basic) indexUsers(list []string) {
	seen := map[string]bool{}
	for _, u := range list {
		name, _, _ := strings.Cut(u, ":")
		seen[name] = true
	}
	for name := range b.htpasswd {
		seen[name] = true
	}
	b.names = make([]string, 0, len(seen))
	for name := range seen {
		b.names = append(b.names, name)
	}
	slices.Sort(b.names)
	b.ids = make(map[string]int, len(b.names))
	for i, name := range b.names {
		b.ids[name] = i
	}
}

// UserID returns a small integer naming a configured user, for per-user
// metrics, or -1 for a name no user list or htpasswd entry has. Call it
// after the credentials were admitted: a user's name is only worth counting
// once its password matched. It does not allocate.
func (b *Basic) UserID(user []byte) int {
	if id, ok := b.ids[string(user)]; ok {
		return id
	}
	return -1
}

// Names returns the configured user names indexed by UserID. Do not modify
// it.
func (b *Basic) Names() []string { return b.names }

// Holder is a *Basic that can be reloaded (SIGHUP): it reads the htpasswd
// file again and swaps in the new credentials, or keeps the old ones when
// the file fails to load. Requests in flight finish with the instance they
// started with. User IDs stay the same for a name across reloads (new names
// get new IDs), so metrics indexed by them stay right. It implements the
// same methods as Basic and is safe for concurrent use.
type Holder struct {
	cur  atomic.Pointer[Basic]
	opts Options

	mu    sync.Mutex // serialises Reload
	ids   map[string]int
	names []string
}

// NewHolder builds the first Basic from opts, as New does.
func NewHolder(opts Options) (*Holder, error) {
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	h := &Holder{opts: opts, ids: map[string]int{}}
	h.adopt(b)
	h.cur.Store(b)
	return h, nil
}

// Reload builds a new Basic from the same options (reading the htpasswd
// file again) and swaps it in. On error the current credentials stay and
// the error, which names the line at fault but never its contents, is
// returned for the log. Remembered bcrypt verdicts are not carried over: a
// password changed or a user removed in the file takes effect at once.
func (h *Holder) Reload() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := New(h.opts)
	if err != nil {
		return err
	}
	h.adopt(b)
	h.cur.Store(b)
	return nil
}

// adopt renumbers b's users with the holder's stable IDs before b is
// published.
func (h *Holder) adopt(b *Basic) {
	for _, name := range b.names {
		if _, ok := h.ids[name]; !ok {
			h.ids[name] = len(h.names)
			h.names = append(h.names, name)
		}
	}
	ids := make(map[string]int, len(b.names))
	for _, name := range b.names {
		ids[name] = h.ids[name]
	}
	b.ids = ids
	b.names = slices.Clone(h.names)
}

// Current returns the Basic in use now.
func (h *Holder) Current() *Basic { return h.cur.Load() }

// Cached implements engine.Authenticator with the current credentials.
func (h *Holder) Cached(value []byte) (ok, known bool) { return h.cur.Load().Cached(value) }

// Verify implements engine.Authenticator with the current credentials.
func (h *Holder) Verify(value []byte) bool { return h.cur.Load().Verify(value) }

// CachedUser is Basic.CachedUser with the current credentials.
func (h *Holder) CachedUser(user, pass []byte) (ok, known bool) {
	return h.cur.Load().CachedUser(user, pass)
}

// VerifyUser is Basic.VerifyUser with the current credentials.
func (h *Holder) VerifyUser(user, pass []byte) bool { return h.cur.Load().VerifyUser(user, pass) }

// UserID is Basic.UserID with the current credentials: a user removed by a
// reload is -1.
func (h *Holder) UserID(user []byte) int { return h.cur.Load().UserID(user) }

// Names returns every user name any loaded file or list defined, indexed by
// UserID. It only grows. Do not modify it.
func (h *Holder) Names() []string { return h.cur.Load().Names() }

package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Basic has engine.Authenticator's method set (cmd/proxyto checks the real
// interface; importing engine here would tie these tests to it).
var _ interface {
	Cached([]byte) (bool, bool)
	Verify([]byte) bool
} = (*Basic)(nil)

func basic(userPass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))
}

func TestUserList(t *testing.T) {
	b, err := New(Options{Users: []string{"alice:secret", "bob:pa:ss", "carol:"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		value string
		want  bool
	}{
		{"good", basic("alice:secret"), true},
		{"second user", basic("bob:pa:ss"), true},
		{"colon in password", basic("bob:pa:ss"), true},
		{"empty password", basic("carol:"), true},
		{"wrong password", basic("alice:secreT"), false},
		{"wrong user", basic("alicia:secret"), false},
		{"password of another user", basic("alice:pa:ss"), false},
		{"prefix of password", basic("alice:secre"), false},
		{"colon split elsewhere", basic("bob:pa"), false},
		{"empty user", basic(":secret"), false},
		{"no colon", basic("alicesecret"), false},
		{"empty credentials", basic(""), false},
		{"scheme lower case", "basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret")), true},
		{"scheme upper case", "BASIC " + base64.StdEncoding.EncodeToString([]byte("alice:secret")), true},
		{"extra spaces", "  Basic \t  " + base64.StdEncoding.EncodeToString([]byte("alice:secret")) + "  ", true},
		{"unpadded", "Basic " + base64.RawStdEncoding.EncodeToString([]byte("alice:secret")), true},
		{"wrong scheme", "Bearer " + base64.StdEncoding.EncodeToString([]byte("alice:secret")), false},
		{"scheme glued to token", "Basic" + base64.StdEncoding.EncodeToString([]byte("alice:secret")), false},
		{"scheme only", "Basic", false},
		{"scheme and spaces", "Basic   ", false},
		{"empty", "", false},
		{"malformed base64", "Basic !!!!", false},
		{"base64 with inner space", "Basic YWxp Y2U6c2VjcmV0", false},
		{"base64 with newline", "Basic YWxpY2U6\nc2VjcmV0", false},
		{"url-safe alphabet", "Basic " + base64.URLEncoding.EncodeToString([]byte("alice:s\xfb\xff")), false},
		{"too long", basic("alice:" + strings.Repeat("x", 2*maxCredentials)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, known := b.Cached([]byte(tt.value))
			if !known {
				t.Fatalf("Cached known = false; a user list always knows")
			}
			if ok != tt.want {
				t.Errorf("Cached ok = %v, want %v", ok, tt.want)
			}
			if got := b.Verify([]byte(tt.value)); got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"nothing", Options{}, ErrNoCredentials},
		{"no colon", Options{Users: []string{"a:b", "justuser"}}, ErrBadUser},
		{"empty user", Options{Users: []string{":pw"}}, ErrBadUser},
		{"missing file", Options{HtpasswdFile: filepath.Join(t.TempDir(), "nope")}, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("New error = %v, want %v", err, tt.want)
			}
		})
	}
	// The entry number is named; the password never is.
	_, err := New(Options{Users: []string{"a:b", "justuser-secretish"}})
	if msg := err.Error(); !strings.Contains(msg, "entry 2") || strings.Contains(msg, "secretish") {
		t.Errorf("error %q should name entry 2 and not its content", msg)
	}
}

// hash returns a cost-4 bcrypt hash of pw, with the $2a$ prefix replaced by
// prefix.
func hash(t testing.TB, pw, prefix string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(h[4:])
}

func writeFile(t testing.TB, content string) string {
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHtpasswdParseErrors(t *testing.T) {
	good := hash(t, "pw", "$2y$")
	tests := []struct {
		name     string
		content  string
		want     error
		wantLine string
	}{
		{"empty file", "", ErrHtpasswdEmpty, ""},
		{"only comments", "# nobody\n\n", ErrHtpasswdEmpty, ""},
		{"no colon", "a:" + good + "\nbogus\n", ErrHtpasswdSyntax, "line 2"},
		{"empty user", ":" + good + "\n", ErrHtpasswdSyntax, "line 1"},
		{"empty hash", "a:\n", ErrHtpasswdSyntax, "line 1"},
		{"md5 apr1", "# c\na:$apr1$hidden$f00f00f00f00f00f00f00f\n", ErrHtpasswdNotBcrypt, "line 2"},
		{"sha1", "a:{SHA}hiddenhiddenhiddenhiddenhidden=\n", ErrHtpasswdNotBcrypt, "line 1"},
		{"plain text", "a:hiddenpassword\n", ErrHtpasswdNotBcrypt, "line 1"},
		{"bcrypt version 2x", "a:" + "$2x$" + good[4:] + "\n", ErrHtpasswdNotBcrypt, "line 1"},
		{"truncated bcrypt", "a:" + good[:40] + "\n", ErrHtpasswdNotBcrypt, "line 1"},
		{"bad cost", "a:$2y$99$" + good[7:] + "\n", ErrHtpasswdNotBcrypt, "line 1"},
		{"duplicate user", "a:" + good + "\nb:" + good + "\na:" + good + "\n", ErrHtpasswdDuplicate, "line 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{HtpasswdFile: writeFile(t, tt.content)})
			if !errors.Is(err, tt.want) {
				t.Fatalf("New error = %v, want %v", err, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantLine) {
				t.Errorf("error %q does not name %q", msg, tt.wantLine)
			}
			if strings.Contains(msg, "hidden") || strings.Contains(msg, good[7:20]) {
				t.Errorf("error %q leaks the entry", msg)
			}
		})
	}
}

func TestHtpasswd(t *testing.T) {
	content := "# users\n\n" +
		"alice:" + hash(t, "secret", "$2y$") + "\n" +
		"  bob:" + hash(t, "pa:ss", "$2a$") + "  \r\n" +
		"carol:" + hash(t, "", "$2b$") + "\n"
	b, err := New(Options{HtpasswdFile: writeFile(t, content), Users: []string{"dave:list"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		value string
		want  bool
	}{
		{"good 2y", basic("alice:secret"), true},
		{"good 2a with colon in password", basic("bob:pa:ss"), true},
		{"good 2b empty password", basic("carol:"), true},
		{"user list alongside", basic("dave:list"), true},
		{"wrong password", basic("alice:Secret"), false},
		{"unknown user", basic("mallory:secret"), false},
		{"empty user", basic(":secret"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := []byte(tt.value)
			ok, known := b.Cached(v)
			if tt.name == "user list alongside" {
				if !known || !ok {
					t.Fatalf("Cached = %v, %v; want true, true for a user-list hit", ok, known)
				}
			} else if tt.name == "empty user" {
				if !known || ok {
					t.Fatalf("Cached = %v, %v; want false, true for malformed credentials", ok, known)
				}
			} else if known {
				t.Fatalf("Cached known before Verify")
			}
			if got := b.Verify(v); got != tt.want {
				t.Fatalf("Verify = %v, want %v", got, tt.want)
			}
			// The verdict is remembered, for any spelling of the same credentials.
			ok, known = b.Cached([]byte("  bAsIc   " + strings.TrimPrefix(tt.value, "Basic ")))
			if !known || ok != tt.want {
				t.Errorf("Cached after Verify = %v, %v; want %v, true", ok, known, tt.want)
			}
		})
	}
}

func TestCacheExpiryAndBounds(t *testing.T) {
	var now int64
	c := newVerdictCache(16, time.Minute, time.Second, func() int64 { return now })
	key := func(i int) *[sha256.Size]byte {
		k := sha256.Sum256([]byte(fmt.Sprint(i)))
		return &k
	}

	c.put(key(1), true)
	c.put(key(2), false)
	if ok, known := c.get(key(1)); !ok || !known {
		t.Fatalf("success not remembered")
	}
	if ok, known := c.get(key(2)); ok || !known {
		t.Fatalf("failure not remembered")
	}
	now += int64(2 * time.Second)
	if _, known := c.get(key(2)); known {
		t.Fatalf("failure outlived its TTL")
	}
	if _, known := c.get(key(1)); !known {
		t.Fatalf("success expired early")
	}
	now += int64(time.Minute)
	if _, known := c.get(key(1)); known {
		t.Fatalf("success outlived its TTL")
	}

	// Fill with successes, then flood with failures: memory stays at the slot
	// count, and no live success is pushed out by a failure.
	for i := range 1000 {
		c.put(key(i), true)
	}
	okN, _ := c.len()
	if okN == 0 || okN > len(c.slots) {
		t.Fatalf("live successes = %d, slots = %d", okN, len(c.slots))
	}
	for i := 1000; i < 100000; i++ {
		c.put(key(i), false)
	}
	okAfter, failN := c.len()
	if okAfter != okN {
		t.Errorf("failures evicted successes: %d → %d", okN, okAfter)
	}
	if okAfter+failN > len(c.slots) {
		t.Errorf("entries %d exceed slots %d", okAfter+failN, len(c.slots))
	}
	// Once the successes expire, failures take their slots, still bounded.
	now += int64(2 * time.Minute)
	for i := 100000; i < 110000; i++ {
		c.put(key(i), false)
	}
	okN, failN = c.len()
	if okN != 0 || failN == 0 || failN > len(c.slots) {
		t.Errorf("after expiry: ok=%d fail=%d slots=%d", okN, failN, len(c.slots))
	}
	// A later verdict for the same key replaces the earlier one.
	c.put(key(7), false)
	c.put(key(7), true)
	if ok, known := c.get(key(7)); !ok || !known {
		t.Errorf("re-put did not replace the verdict")
	}
}

func TestCacheSizeDefaultsAndRounding(t *testing.T) {
	if n := len(newVerdictCache(0, time.Second, time.Second, nil).slots); n != ways {
		t.Errorf("size 0 → %d slots, want %d", n, ways)
	}
	if n := len(newVerdictCache(100, time.Second, time.Second, nil).slots); n != 128 {
		t.Errorf("size 100 → %d slots, want 128", n)
	}
	b, err := New(Options{HtpasswdFile: writeFile(t, "a:"+hash(t, "pw", "$2y$")+"\n")})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.cache.slots); n != 4096 {
		t.Errorf("default cache = %d slots, want 4096", n)
	}
}

// TestConcurrent runs Cached and Verify from many goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	content := "alice:" + hash(t, "secret", "$2y$") + "\n"
	b, err := New(Options{HtpasswdFile: writeFile(t, content), Users: []string{"bob:pw"}, CacheSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	values := []struct {
		v    []byte
		want bool
	}{
		{[]byte(basic("alice:secret")), true},
		{[]byte(basic("bob:pw")), true},
		{[]byte(basic("alice:nope")), false},
		{[]byte("Basic %%%"), false},
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				x := values[(g+i)%len(values)]
				if ok, known := b.Cached(x.v); known && ok != x.want {
					t.Errorf("Cached(%d) = %v", (g+i)%len(values), ok)
				}
				if i%5 == 0 {
					if got := b.Verify(x.v); got != x.want {
						t.Errorf("Verify(%d) = %v", (g+i)%len(values), got)
					}
				}
				// Random wrong credentials churn the tiny cache.
				if i%7 == 0 {
					b.Verify([]byte(basic(fmt.Sprintf("alice:%d-%d", g, i))))
				}
			}
		})
	}
	wg.Wait()
}

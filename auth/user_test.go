package auth

import (
	"bytes"
	"encoding/base64"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestDecodeBasic(t *testing.T) {
	tests := []struct {
		value      string
		user, pass string
		ok         bool
	}{
		{basic("alice:secret"), "alice", "secret", true},
		{basic("alice-route-r-session-s:pa:ss"), "alice-route-r-session-s", "pa:ss", true},
		{basic("bob:"), "bob", "", true},
		{"  basic\t" + base64.RawStdEncoding.EncodeToString([]byte("u:p")) + " ", "u", "p", true},
		{basic(":p"), "", "", false},
		{basic("nocolon"), "", "", false},
		{"Bearer x", "", "", false},
		{"Basic ****", "", "", false},
		{basic("u:" + strings.Repeat("p", MaxCredentials)), "", "", false},
	}
	for _, tt := range tests {
		var buf [MaxCredentials]byte
		user, pass, ok := DecodeBasic([]byte(tt.value), buf[:])
		if ok != tt.ok || string(user) != tt.user || string(pass) != tt.pass {
			t.Errorf("DecodeBasic(%q) = %q, %q, %v; want %q, %q, %v", tt.value, user, pass, ok, tt.user, tt.pass, tt.ok)
		}
	}
	// A buffer too small is refused, not overrun.
	var small [4]byte
	if _, _, ok := DecodeBasic([]byte(basic("alice:secret")), small[:]); ok {
		t.Error("decoded into a too-small buffer")
	}
}

func FuzzDecodeBasic(f *testing.F) {
	for _, s := range []string{basic("a:b"), basic("alice-route-x:pw"), "Basic", "basic YTpi==", "Basic YTpi\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		var buf [MaxCredentials]byte
		user, pass, ok := DecodeBasic(value, buf[:])
		if !ok {
			return
		}
		// Differential: the standard decoder reads the same credentials.
		v := bytes.TrimSpace(value)
		tok := bytes.TrimLeft(v[len("basic"):], " \t")
		want, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(string(tok), "="))
		if err != nil {
			t.Fatalf("accepted %q that base64 refuses: %v", value, err)
		}
		u, p, _ := bytes.Cut(want, []byte{':'})
		if !bytes.Equal(u, user) || !bytes.Equal(p, pass) || len(user) == 0 {
			t.Fatalf("DecodeBasic(%q) = %q, %q; base64 says %q", value, user, pass, want)
		}
	})
}

func TestCachedUserVerifyUser(t *testing.T) {
	content := "carol:" + hash(t, "hunter2", "$2y$") + "\n"
	b, err := New(Options{Users: []string{"alice:secret", "bob:pa:ss"}, HtpasswdFile: writeFile(t, content)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, pass string
		ok, known  bool
	}{
		{"alice", "secret", true, true},
		{"bob", "pa:ss", true, true},
		{"alice", "wrong", false, false}, // might be an htpasswd user: only Verify tells
		{"", "secret", false, true},
		{"ali:ce", "secret", false, true},
		{"carol", "hunter2", false, false},
	}
	for _, tt := range tests {
		ok, known := b.CachedUser([]byte(tt.user), []byte(tt.pass))
		if ok != tt.ok || known != tt.known {
			t.Errorf("CachedUser(%q) = %v, %v; want %v, %v", tt.user, ok, known, tt.ok, tt.known)
		}
	}
	if !b.VerifyUser([]byte("carol"), []byte("hunter2")) {
		t.Error("VerifyUser(carol) failed")
	}
	if ok, known := b.CachedUser([]byte("carol"), []byte("hunter2")); !ok || !known {
		t.Error("VerifyUser's verdict not cached for CachedUser")
	}
	// The same credentials through the header path share the verdict.
	if ok, known := b.Cached([]byte(basic("carol:hunter2"))); !ok || !known {
		t.Error("header path does not see the verdict")
	}
	if b.VerifyUser([]byte("carol"), []byte("nope")) || b.VerifyUser([]byte("dave"), []byte("hunter2")) {
		t.Error("VerifyUser admitted wrong credentials")
	}
	if !slices.Equal(b.Names(), []string{"alice", "bob", "carol"}) {
		t.Errorf("Names = %v", b.Names())
	}
	for i, name := range b.Names() {
		if b.UserID([]byte(name)) != i {
			t.Errorf("UserID(%s) = %d, want %d", name, b.UserID([]byte(name)), i)
		}
	}
	if b.UserID([]byte("dave")) != -1 {
		t.Error("UserID of an unknown user")
	}
}

func TestHolderReload(t *testing.T) {
	path := writeFile(t, "bob:"+hash(t, "old", "$2y$")+"\n")
	h, err := NewHolder(Options{Users: []string{"alice:secret"}, HtpasswdFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Verify([]byte(basic("bob:old"))) {
		t.Fatal("bob:old refused")
	}
	bobID := h.UserID([]byte("bob"))

	// A broken file keeps the old credentials, and the error holds no hash.
	if err := os.WriteFile(path, []byte("bob:$2y$nothash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = h.Reload()
	if err == nil || strings.Contains(err.Error(), "nothash") {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if ok, known := h.Cached([]byte(basic("bob:old"))); !ok || !known {
		t.Fatal("old credentials lost after a failed reload")
	}

	// bob's password changes and carol arrives: the old verdict must not
	// survive, bob keeps his ID, carol gets a new one.
	if err := os.WriteFile(path, []byte("carol:"+hash(t, "c", "$2y$")+"\nbob:"+hash(t, "new", "$2y$")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok, known := h.Cached([]byte(basic("bob:old"))); ok && known {
		t.Fatal("a changed password still admitted from the cache")
	}
	if h.Verify([]byte(basic("bob:old"))) || !h.VerifyUser([]byte("bob"), []byte("new")) {
		t.Fatal("reloaded password not in effect")
	}
	if h.UserID([]byte("bob")) != bobID {
		t.Errorf("bob's ID changed from %d to %d", bobID, h.UserID([]byte("bob")))
	}
	if got := h.Names(); !slices.Equal(got, []string{"alice", "bob", "carol"}) || h.UserID([]byte("carol")) != 2 {
		t.Errorf("Names = %v, carol = %d", got, h.UserID([]byte("carol")))
	}

	// bob leaves: his ID stays reserved, he is refused.
	if err := os.WriteFile(path, []byte("carol:"+hash(t, "c", "$2y$")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if h.UserID([]byte("bob")) != -1 || h.VerifyUser([]byte("bob"), []byte("new")) {
		t.Error("a removed user is still known")
	}
	if h.UserID([]byte("carol")) != 2 || len(h.Names()) != 3 {
		t.Errorf("IDs after removal: carol=%d names=%v", h.UserID([]byte("carol")), h.Names())
	}
}

// TestHolderConcurrent checks and reloads at once; run with -race.
func TestHolderConcurrent(t *testing.T) {
	path := writeFile(t, "bob:"+hash(t, "pw", "$2y$")+"\n")
	h, err := NewHolder(Options{Users: []string{"alice:secret"}, HtpasswdFile: path})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if ok, _ := h.CachedUser([]byte("alice"), []byte("secret")); !ok {
					t.Error("alice refused")
					return
				}
				_ = h.UserID([]byte("bob"))
			}
		}()
	}
	for range 5 {
		if err := h.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

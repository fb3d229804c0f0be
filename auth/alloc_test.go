//go:build !race

package auth

import (
	"testing"
)

func TestCachedAllocs(t *testing.T) {
	content := "alice:" + hash(t, "secret", "$2y$") + "\n"
	b, err := New(Options{Users: []string{"u1:p1", "u2:p2", "bob:pw"}, HtpasswdFile: writeFile(t, content)})
	if err != nil {
		t.Fatal(err)
	}
	b.Verify([]byte(basic("alice:secret")))
	tests := []struct {
		name       string
		value      []byte
		wantOK     bool
		wantKnown  bool
		wantAllocs float64
	}{
		{"user-list hit", []byte(basic("bob:pw")), true, true, 0},
		{"user-list miss, not cached", []byte(basic("bob:nope")), false, false, 0},
		{"htpasswd cached hit", []byte(basic("alice:secret")), true, true, 0},
		{"malformed", []byte("Basic ***"), false, true, 0},
		{"wrong scheme", []byte("Digest x"), false, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ok, known bool
			allocs := testing.AllocsPerRun(100, func() { ok, known = b.Cached(tt.value) })
			if ok != tt.wantOK || known != tt.wantKnown {
				t.Errorf("Cached = %v, %v; want %v, %v", ok, known, tt.wantOK, tt.wantKnown)
			}
			if allocs != tt.wantAllocs {
				t.Errorf("Cached allocs = %v, want %v", allocs, tt.wantAllocs)
			}
		})
	}
}

func TestUserPathAllocs(t *testing.T) {
	b, err := New(Options{Users: []string{"alice:secret"}})
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(basic("alice-route-r-session-s:secret"))
	var buf [MaxCredentials]byte
	allocs := testing.AllocsPerRun(100, func() {
		user, pass, ok := DecodeBasic(value, buf[:])
		if !ok {
			t.Fatal("decode")
		}
		user = user[:len("alice")]
		if ok, _ := b.CachedUser(user, pass); !ok {
			t.Fatal("refused")
		}
		_ = b.UserID(user)
	})
	if allocs != 0 {
		t.Errorf("DecodeBasic+CachedUser+UserID: %v allocs, want 0", allocs)
	}
}

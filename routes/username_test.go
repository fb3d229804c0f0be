package routes

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseUsername(t *testing.T) {
	tests := []struct {
		in                   string
		user, route, session string
		err                  error
	}{
		{"alice", "alice", "", "", nil},
		{"", "", "", "", nil},
		{"alice-route-residential", "alice", "residential", "", nil},
		{"alice-session-s42", "alice", "", "s42", nil},
		{"alice-route-residential-session-s42", "alice", "residential", "s42", nil},
		{"alice-session-s42-route-residential", "alice", "residential", "s42", nil},
		{"al-ice-route-eu-west-1-session-a-b-c", "al-ice", "eu-west-1", "a-b-c", nil},
		{"-route-x", "", "x", "", nil},
		{"alice-Route-x", "alice-Route-x", "", "", nil}, // markers are case-sensitive
		{"alice-routes-x", "alice-routes-x", "", "", nil},
		{"alice-route--x", "alice", "-x", "", nil},
		{"alice-route-", "", "", "", ErrBadUsername},
		{"alice-session-", "", "", "", ErrBadUsername},
		{"alice-route--session-x", "", "", "", ErrBadUsername},
		{"alice-route-a-route-b", "", "", "", ErrBadUsername},
		{"alice-session-a-session-b", "", "", "", ErrBadUsername},
		{"alice-session-a b", "", "", "", ErrBadUsername},
		{"alice-session-a\x00", "", "", "", ErrBadUsername},
		{"alice-session-" + strings.Repeat("k", MaxSessionLen), "alice", "", strings.Repeat("k", MaxSessionLen), nil},
		{"alice-session-" + strings.Repeat("k", MaxSessionLen+1), "", "", "", ErrBadUsername},
	}
	for _, tt := range tests {
		sel, err := ParseUsername([]byte(tt.in))
		if !errors.Is(err, tt.err) {
			t.Errorf("ParseUsername(%q) err = %v, want %v", tt.in, err, tt.err)
			continue
		}
		if string(sel.User) != tt.user || string(sel.Route) != tt.route || string(sel.Session) != tt.session {
			t.Errorf("ParseUsername(%q) = %q %q %q, want %q %q %q", tt.in, sel.User, sel.Route, sel.Session, tt.user, tt.route, tt.session)
		}
		if err != nil {
			var se *SelectError
			if !errors.As(err, &se) || se.Response().Code() != 400 {
				t.Errorf("ParseUsername(%q): err %v is not a 400 *SelectError", tt.in, err)
			}
		}
	}
}

func TestRouteRefAndSession(t *testing.T) {
	refs := []struct {
		in   string
		name string
		ok   bool
	}{
		{"@residential", "residential", true},
		{"  @dc\t", "dc", true},
		{"@", "", true},
		{"@a, b:3128", "a, b:3128", true}, // not a route: Lookup fails
		{"user@host:1", "", false},
		{"", "", false},
		{"http://@h", "", false},
	}
	for _, tt := range refs {
		name, ok := RouteRef([]byte(tt.in))
		if ok != tt.ok || string(name) != tt.name {
			t.Errorf("RouteRef(%q) = %q, %v; want %q, %v", tt.in, name, ok, tt.name, tt.ok)
		}
	}
	sessions := []struct {
		in   string
		want string
		err  error
	}{
		{"s42", "s42", nil},
		{" s42 ", "s42", nil},
		{"", "", ErrBadSession},
		{"a b", "", ErrBadSession},
		{strings.Repeat("x", MaxSessionLen+1), "", ErrBadSession},
	}
	for _, tt := range sessions {
		got, err := SessionHeader([]byte(tt.in))
		if string(got) != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("SessionHeader(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// offset returns where sub, a slice of u, starts in u.
func offset(u, sub []byte) int { return cap(u) - cap(sub) }

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"alice", "alice-route-r-session-s", "a-session-x-route-y", "-route-", "x-route-a-route-b", "é-session-ü",
		"-session-0-route--session", // a value that, moved before a marker, would form one
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, u []byte) {
		sel, err := ParseUsername(u)
		if err != nil {
			if sel.User != nil || sel.Route != nil || sel.Session != nil {
				t.Fatal("a failed parse returned parts")
			}
			return
		}
		if !bytes.HasPrefix(u, sel.User) {
			t.Fatalf("user %q is not a prefix of %q", sel.User, u)
		}
		// The parts and their markers are the whole username.
		n := len(sel.User)
		if sel.Route != nil {
			n += len(markerRoute) + len(sel.Route)
			if bytes.Contains(sel.Route, []byte(markerRoute)) || bytes.Contains(sel.Route, []byte(markerSession)) {
				t.Fatalf("route %q holds a marker", sel.Route)
			}
		}
		if sel.Session != nil {
			n += len(markerSession) + len(sel.Session)
			if !ValidSession(sel.Session) {
				t.Fatalf("invalid session %q accepted", sel.Session)
			}
		}
		if n != len(u) {
			t.Fatalf("parts of %q cover %d bytes", u, n)
		}
		if bytes.Contains(sel.User, []byte(markerRoute)) || bytes.Contains(sel.User, []byte(markerSession)) {
			t.Fatalf("user %q holds a marker", sel.User)
		}
		// The parts, in the order they came, rebuild the username: each is
		// the very slice of u its marker starts.
		b := append([]byte(nil), sel.User...)
		parts := [][]byte{sel.Route, sel.Session}
		marks := []string{markerRoute, markerSession}
		if sel.Route != nil && sel.Session != nil && offset(u, sel.Session) < offset(u, sel.Route) {
			parts[0], parts[1], marks[0], marks[1] = parts[1], parts[0], marks[1], marks[0]
		}
		for i, p := range parts {
			if p != nil {
				if got := offset(u, p) - len(marks[i]); got != len(b) {
					t.Fatalf("%q: part %q at %d, want %d", u, p, got+len(marks[i]), len(b)+len(marks[i]))
				}
				b = append(append(b, marks[i]...), p...)
			}
		}
		if !bytes.Equal(b, u) {
			t.Fatalf("%q rebuilt as %q", u, b)
		}
	})
}

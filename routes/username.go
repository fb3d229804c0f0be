package routes

import "bytes"

// The markers of a vendor-style proxy username ("alice-route-eu-session-s1").
const (
	markerRoute   = "-route-"
	markerSession = "-session-"
)

// MaxSessionLen bounds a session key, from X-Proxy-Session or a username.
const MaxSessionLen = 256

// Selection is what a Proxy-Authorization username asks for. Its slices
// point into the username passed to ParseUsername.
type Selection struct {
	// User is the part before the first "-route-" or "-session-": the user
	// checked against the credentials when client authentication is on.
	// It is the whole username when there is neither.
	User []byte
	// Route is the value after "-route-"; empty when none.
	Route []byte
	// Session is the value after "-session-"; empty when none.
	Session []byte
}

// ParseUsername splits a username of the form
//
//	user [ "-route-" NAME ] [ "-session-" KEY ]     (either order)
//
// Each value runs to the next marker or the end, so a route name or session
// key may hold '-' but not a marker. Markers are matched case-sensitively.
// An empty value, a repeated marker, or a session key over MaxSessionLen
// bytes or holding a control byte is ErrBadUsername (a *SelectError). The
// route name is not checked here: an unknown one fails Table.Lookup. It
// never allocates.
func ParseUsername(u []byte) (Selection, error) {
	at, m := nextMarker(u, 0)
	if at < 0 {
		return Selection{User: u}, nil
	}
	sel := Selection{User: u[:at]}
	for at >= 0 {
		start := at + len(m)
		next, nm := nextMarker(u, start)
		end := next
		if end < 0 {
			end = len(u)
		}
		v := u[start:end]
		if len(v) == 0 {
			return Selection{}, errBadUsername
		}
		if m == markerRoute {
			if sel.Route != nil {
				return Selection{}, errBadUsername
			}
			sel.Route = v
		} else {
			if sel.Session != nil || !ValidSession(v) {
				return Selection{}, errBadUsername
			}
			sel.Session = v
		}
		at, m = next, nm
	}
	return sel, nil
}

// nextMarker finds the first "-route-" or "-session-" at or after from.
func nextMarker(u []byte, from int) (int, string) {
	for i := from; i < len(u); {
		j := bytes.IndexByte(u[i:], '-')
		if j < 0 {
			break
		}
		i += j
		rest := u[i:]
		switch {
		case bytes.HasPrefix(rest, []byte(markerRoute)):
			return i, markerRoute
		case bytes.HasPrefix(rest, []byte(markerSession)):
			return i, markerSession
		}
		i++
	}
	return -1, ""
}

// ValidSession reports whether k may be a session key: 1 to MaxSessionLen
// bytes, none of them a control byte or a space.
func ValidSession(k []byte) bool {
	if len(k) == 0 || len(k) > MaxSessionLen {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// SessionHeader checks an X-Proxy-Session value (optional whitespace
// around it is trimmed) and returns the key, a slice of v. A bad value is
// ErrBadSession (a *SelectError).
func SessionHeader(v []byte) ([]byte, error) {
	v = bytes.Trim(v, " \t")
	if !ValidSession(v) {
		return nil, errBadSession
	}
	return v, nil
}

// RouteRef reports whether an X-Proxy-To value names a route ("@name",
// optional whitespace around it) and returns the name, a slice of v. The
// engine checks this before parsing the value as an upstream list: "@name"
// would otherwise parse as an upstream with empty credentials. A name that
// is not a route, including "@a, b:3128", fails Table.Lookup.
func RouteRef(v []byte) (name []byte, ok bool) {
	v = bytes.Trim(v, " \t")
	if len(v) == 0 || v[0] != '@' {
		return nil, false
	}
	return v[1:], true
}

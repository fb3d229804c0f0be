package httpparse

import (
	"bytes"
	"strconv"
)

// Scheme is how proxyto talks to an upstream proxy (docs/behaviour.md, "X-Proxy-To").
type Scheme uint8

// The X-Proxy-To schemes. The zero value is SchemeHTTP, the default.
const (
	SchemeHTTP    Scheme = iota // plain HTTP proxy (default port 80)
	SchemeHTTPS                 // HTTP proxy over TLS (default port 443)
	SchemeSOCKS5                // SOCKS5, proxyto resolves the target (default port 1080)
	SchemeSOCKS5H               // SOCKS5, the upstream resolves the target (default port 1080)
)

// String returns the scheme name as written in X-Proxy-To.
func (s Scheme) String() string {
	switch s {
	case SchemeHTTP:
		return "http"
	case SchemeHTTPS:
		return "https"
	case SchemeSOCKS5:
		return "socks5"
	case SchemeSOCKS5H:
		return "socks5h"
	}
	return "unknown"
}

// IsSOCKS reports whether the upstream speaks SOCKS5 (socks5 or socks5h)
// rather than HTTP.
func (s Scheme) IsSOCKS() bool { return s == SchemeSOCKS5 || s == SchemeSOCKS5H }

// DefaultPort is the port used when an entry names none.
func (s Scheme) DefaultPort() uint16 {
	switch s {
	case SchemeHTTPS:
		return 443
	case SchemeSOCKS5, SchemeSOCKS5H:
		return 1080
	}
	return 80
}

// Limits of the X-Proxy-To grammar.
const (
	MaxProxyToLen = 4096 // bytes of the whole header value (docs/behaviour.md, "X-Proxy-To")
	MaxUpstreams  = 8    // entries of a failover list
)

// Upstream is one parsed X-Proxy-To entry. Its byte slices point into the
// UpstreamList that produced it and stay valid until that list parses again.
// Do not log User or Pass, nor format an Upstream with %v: it holds them.
type Upstream struct {
	Scheme Scheme
	Host   []byte // DNS name or IP literal, without brackets; never empty
	IPv6   bool   // Host is an IPv6 literal: bracket it when joining a port
	Port   uint16 // 1-65535; the scheme's DefaultPort when not given

	// User and Pass are percent-decoded; either may be empty ("user@",
	// ":pass@", "u:@"). HasAuth tells "no userinfo" from "empty userinfo".
	User, Pass []byte
	HasAuth    bool
}

// AppendHostPort appends "host:port" or "[v6]:port": never the credentials,
// so the result is safe for logs and for the CONNECT target.
func (u *Upstream) AppendHostPort(dst []byte) []byte {
	if u.IPv6 {
		dst = append(dst, '[')
		dst = append(dst, u.Host...)
		dst = append(dst, ']')
	} else {
		dst = append(dst, u.Host...)
	}
	dst = append(dst, ':')
	return strconv.AppendUint(dst, uint64(u.Port), 10)
}

// UpstreamList is a parsed X-Proxy-To failover list: List[:N] in header
// order. The zero value is ready; Parse reuses its storage, so a list kept
// per connection parses without allocating after the first time. Not safe
// for concurrent use.
type UpstreamList struct {
	List [MaxUpstreams]Upstream
	N    int
	buf  []byte // owns the bytes List points into
}

// Upstreams returns List[:N].
func (l *UpstreamList) Upstreams() []Upstream { return l.List[:l.N] }

// Parse parses an X-Proxy-To value (docs/behaviour.md, "X-Proxy-To"):
//
//	list  = entry *( OWS "," OWS entry )
//	entry = [ scheme "://" ] [ user [ ":" password ] "@" ] host [ ":" port ]
//
// It copies v first, so the result stays valid after the caller's buffer is
// overwritten. On error N is 0 and the error is a *ProxyToError wrapping an
// ErrProxyTo* sentinel; it never contains bytes of v.
func (l *UpstreamList) Parse(v []byte) error {
	for i := range l.N {
		l.List[i] = Upstream{}
	}
	l.N = 0
	if len(v) > MaxProxyToLen {
		return &ProxyToError{Err: ErrProxyToTooLong}
	}
	v = trimOWS(v)
	if len(v) == 0 {
		return &ProxyToError{Err: ErrProxyToEmpty}
	}
	l.buf = append(l.buf[:0], v...)
	rest := l.buf
	n := 0
	for {
		comma := bytes.IndexByte(rest, ',')
		elem := rest
		if comma >= 0 {
			elem = rest[:comma]
		}
		elem = trimOWS(elem)
		var err error
		switch {
		case len(elem) == 0:
			err = ErrProxyToEmptyElement
		case n == MaxUpstreams:
			err = ErrProxyToTooMany
		default:
			err = l.List[n].parse(elem)
		}
		if err != nil {
			for i := range n + 1 {
				if i < MaxUpstreams {
					l.List[i] = Upstream{}
				}
			}
			return &ProxyToError{Index: n, Err: err}
		}
		n++
		if comma < 0 {
			break
		}
		rest = rest[comma+1:]
	}
	l.N = n
	return nil
}

// parse parses one trimmed entry, percent-decoding user and password in
// place: e is modified and u points into it.
func (u *Upstream) parse(e []byte) error {
	*u = Upstream{}
	for _, c := range e {
		if c <= ' ' || c >= 0x7f {
			return ErrProxyToControl
		}
	}
	if i := bytes.Index(e, []byte("://")); i >= 0 {
		s, ok := parseScheme(e[:i])
		if !ok {
			return ErrProxyToScheme
		}
		u.Scheme, e = s, e[i+3:]
	}
	if bytes.IndexAny(e, "/?#") >= 0 {
		return ErrProxyToPath
	}
	if at := bytes.IndexByte(e, '@'); at >= 0 {
		ui := e[:at]
		e = e[at+1:]
		if bytes.IndexByte(e, '@') >= 0 {
			return ErrProxyToUserinfo // '@' in a password must be %40
		}
		user, pass := ui, ui[len(ui):]
		if c := bytes.IndexByte(ui, ':'); c >= 0 {
			user, pass = ui[:c], ui[c+1:]
		}
		var err error
		if u.User, err = decodeUserinfo(user, true); err != nil {
			return err
		}
		if u.Pass, err = decodeUserinfo(pass, false); err != nil {
			return err
		}
		u.HasAuth = true
	}
	host, port, ipv6, code := splitHostPort(e, u.Scheme.DefaultPort())
	switch code {
	case hpBadHost:
		return ErrProxyToHost
	case hpBadPort:
		return ErrProxyToPort
	}
	u.Host, u.Port, u.IPv6 = host, port, ipv6
	return nil
}

// parseScheme matches the four scheme names case-insensitively.
func parseScheme(b []byte) (Scheme, bool) {
	switch {
	case equalFoldLower(b, "http"):
		return SchemeHTTP, true
	case equalFoldLower(b, "https"):
		return SchemeHTTPS, true
	case equalFoldLower(b, "socks5"):
		return SchemeSOCKS5, true
	case equalFoldLower(b, "socks5h"):
		return SchemeSOCKS5H, true
	}
	return 0, false
}

// decodeUserinfo checks and percent-decodes b in place. A decoded control
// byte is refused, and so is a ':' in the user, which Basic credentials
// could not carry (RFC 7617 §2).
func decodeUserinfo(b []byte, isUser bool) ([]byte, error) {
	w := 0
	for r := 0; r < len(b); r++ {
		c := b[r]
		if !userinfoTable[c] || isUser && c == ':' {
			return nil, ErrProxyToUserinfo
		}
		if c == '%' {
			if r+2 >= len(b) || unhexTable[b[r+1]] == 0xff || unhexTable[b[r+2]] == 0xff {
				return nil, ErrProxyToEscape
			}
			c = unhexTable[b[r+1]]<<4 | unhexTable[b[r+2]]
			r += 2
			if c < ' ' || c == 0x7f {
				return nil, ErrProxyToControl
			}
			if isUser && c == ':' {
				return nil, ErrProxyToUserinfo
			}
		}
		b[w] = c
		w++
	}
	return b[:w:w], nil
}

// AppendBasicAuth appends a Proxy-Authorization value,
// "Basic " + base64(user ":" pass) (RFC 7617), without allocating.
func AppendBasicAuth(dst, user, pass []byte) []byte {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	dst = append(dst, "Basic "...)
	n := len(user) + 1 + len(pass)
	at := func(i int) byte {
		switch {
		case i < len(user):
			return user[i]
		case i == len(user):
			return ':'
		}
		return pass[i-len(user)-1]
	}
	for i := 0; i < n; i += 3 {
		var v uint32
		k := min(3, n-i)
		for j := 0; j < k; j++ {
			v |= uint32(at(i+j)) << (16 - 8*j)
		}
		dst = append(dst, enc[v>>18&63], enc[v>>12&63])
		if k > 1 {
			dst = append(dst, enc[v>>6&63])
		} else {
			dst = append(dst, '=')
		}
		if k > 2 {
			dst = append(dst, enc[v&63])
		} else {
			dst = append(dst, '=')
		}
	}
	return dst
}

package upstream

import (
	"net/netip"

	"github.com/proxyto/proxyto/proxystatus"
)

// Socks5 is the Handshake of an RFC 1928 exchange with RFC 1929
// username/password authentication. The zero value is not usable; set the
// fields and call Start.
type Socks5 struct {
	// User and Pass are sent when HasAuth (RFC 1929); each at most 255 bytes.
	User, Pass []byte
	HasAuth    bool
	// Addr is the target address when proxyto resolved it (socks5); when
	// invalid, Host is sent as a domain name (socks5h).
	Addr netip.Addr
	Host []byte
	Port uint16
	// Tunnel makes the finished handshake reply to the client with
	// "200 Connection established" (a CONNECT); without it the caller
	// sends a forwarded request next.
	Tunnel bool

	step uint8
}

// SOCKS5 exchange steps.
const (
	socksMethod uint8 = iota // sent greeting, awaiting method choice
	socksAuth                // sent username/password, awaiting status
	socksReply               // sent CONNECT, awaiting reply
	socksDone
)

// Start appends the greeting to dst.
func (s *Socks5) Start(dst []byte) ([]byte, bool, error) {
	if len(s.User) > 255 || len(s.Pass) > 255 || len(s.Host) > 255 {
		return dst, false, proxystatus.New(proxystatus.HTTPRequestError, "SOCKS5 credentials or host name longer than 255 bytes")
	}
	s.step = socksMethod
	if s.HasAuth {
		return append(dst, 5, 2, 0, 2), false, nil
	}
	return append(dst, 5, 1, 0), false, nil
}

// Feed consumes the upstream's answers, one step at a time.
func (s *Socks5) Feed(in, send, reply []byte) (Step, error) {
	n, next, done, err := s.feed(in, send)
	st := Step{N: n, Send: next, Reply: reply, Done: done}
	if done && s.Tunnel {
		st.Reply = AppendEstablished(reply, nil, nil)
	}
	return st, err
}

// feed consumes the upstream's bytes in. It returns how many it used, what to
// send next appended to out, and done once the tunnel is open. With n == 0
// and no error it needs more bytes.
func (s *Socks5) feed(in, out []byte) (n int, next []byte, done bool, err error) {
	next = out
	switch s.step {
	case socksMethod:
		if len(in) < 2 {
			return 0, next, false, nil
		}
		if in[0] != 5 {
			return 0, next, false, s.protoErr()
		}
		switch {
		case in[1] == 2 && s.HasAuth:
			next = append(next, 1, byte(len(s.User)))
			next = append(next, s.User...)
			next = append(next, byte(len(s.Pass)))
			next = append(next, s.Pass...)
			s.step = socksAuth
		case in[1] == 0:
			next = s.appendRequest(next)
			s.step = socksReply
		default:
			return 0, next, false, &proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Detail: "SOCKS5 upstream accepted no offered authentication method"}
		}
		return 2, next, false, nil
	case socksAuth:
		if len(in) < 2 {
			return 0, next, false, nil
		}
		if in[0] != 1 {
			return 0, next, false, s.protoErr()
		}
		if in[1] != 0 {
			return 0, next, false, &proxystatus.Error{Type: proxystatus.HTTPRequestDenied, Detail: "SOCKS5 upstream rejected the credentials"}
		}
		next = s.appendRequest(next)
		s.step = socksReply
		return 2, next, false, nil
	case socksReply:
		if len(in) < 5 {
			return 0, next, false, nil
		}
		if in[0] != 5 {
			return 0, next, false, s.protoErr()
		}
		var need int
		switch in[3] {
		case 1:
			need = 4 + 4 + 2
		case 4:
			need = 4 + 16 + 2
		case 3:
			need = 4 + 1 + int(in[4]) + 2
		default:
			return 0, next, false, s.protoErr()
		}
		if len(in) < need {
			return 0, next, false, nil
		}
		if in[1] != 0 {
			return 0, next, false, socksReplyErr(in[1])
		}
		s.step = socksDone
		return need, next, true, nil
	}
	return 0, next, false, s.protoErr()
}

func (s *Socks5) appendRequest(dst []byte) []byte {
	dst = append(dst, 5, 1, 0)
	switch {
	case s.Addr.Is4():
		a := s.Addr.As4()
		dst = append(dst, 1)
		dst = append(dst, a[:]...)
	case s.Addr.Is6():
		a := s.Addr.As16()
		dst = append(dst, 4)
		dst = append(dst, a[:]...)
	default:
		dst = append(dst, 3, byte(len(s.Host)))
		dst = append(dst, s.Host...)
	}
	return append(dst, byte(s.Port>>8), byte(s.Port))
}

func (s *Socks5) protoErr() error {
	return &proxystatus.Error{Type: proxystatus.HTTPResponseError, Detail: "upstream spoke no SOCKS5"}
}

// socksReplyErr maps an RFC 1928 REP code to the client-facing error.
func socksReplyErr(rep byte) error {
	e := &proxystatus.Error{Type: proxystatus.DestinationUnavailable}
	switch rep {
	case 2:
		e.Type, e.Detail = proxystatus.HTTPRequestDenied, "SOCKS5 upstream: connection not allowed by ruleset"
	case 3:
		e.Detail = "SOCKS5 upstream: network unreachable"
	case 4:
		e.Detail = "SOCKS5 upstream: host unreachable"
	case 5:
		e.Detail = "SOCKS5 upstream: connection refused by target"
	case 6:
		e.Detail = "SOCKS5 upstream: TTL expired"
	case 7:
		e.Detail = "SOCKS5 upstream: command not supported"
	case 8:
		e.Detail = "SOCKS5 upstream: address type not supported"
	default:
		e.Detail = "SOCKS5 upstream: general failure"
	}
	return e
}

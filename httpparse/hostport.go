package httpparse

import "bytes"

// SplitHostPort splits "host[:port]" or "[ipv6][:port]" without allocating:
// host is a sub-slice of hostport, without brackets. A missing port yields
// defaultPort; with defaultPort 0 the port is required. ok is false for an
// empty host, a host that is not a DNS name (letters, digits, '-', '_', '.',
// labels of 1-63 bytes, at most 253 bytes), an all-numeric host that is not
// dotted-quad IPv4, an unbracketed or invalid IPv6 address (zones are
// refused), and a port that is empty, non-numeric or outside 1-65535.
func SplitHostPort(hostport []byte, defaultPort uint16) (host []byte, port uint16, ipv6, ok bool) {
	host, port, ipv6, code := splitHostPort(hostport, defaultPort)
	return host, port, ipv6, code == hpOK
}

// hpCode says which part of a host:port failed.
type hpCode uint8

const (
	hpOK hpCode = iota
	hpBadHost
	hpBadPort
)

func splitHostPort(b []byte, defaultPort uint16) (host []byte, port uint16, ipv6 bool, code hpCode) {
	var rest []byte // ":port" or empty
	if len(b) > 0 && b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 0 || !validIPv6(b[1:end]) {
			return nil, 0, false, hpBadHost
		}
		host, rest, ipv6 = b[1:end], b[end+1:], true
		if len(rest) > 0 && rest[0] != ':' {
			return nil, 0, false, hpBadHost
		}
	} else {
		colon := bytes.IndexByte(b, ':')
		host = b
		if colon >= 0 {
			host, rest = b[:colon], b[colon:]
			if bytes.IndexByte(rest[1:], ':') >= 0 {
				return nil, 0, false, hpBadHost // unbracketed IPv6
			}
		}
		if !validHostName(host) {
			return nil, 0, false, hpBadHost
		}
	}
	if len(rest) == 0 {
		if defaultPort == 0 {
			return nil, 0, false, hpBadPort
		}
		return host, defaultPort, ipv6, hpOK
	}
	p, ok := parsePort(rest[1:])
	if !ok {
		return nil, 0, false, hpBadPort
	}
	return host, p, ipv6, hpOK
}

// parsePort parses 1-5 decimal digits with a value of 1-65535.
func parsePort(b []byte) (uint16, bool) {
	n, ok := parseDigits5(b)
	if !ok || n == 0 || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// parseDigits5 parses 1-5 decimal digits.
func parseDigits5(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// validHostName accepts a DNS name (optionally ending in '.') or a
// dotted-quad IPv4 address. A name made only of digits and dots must be a
// valid IPv4 address, so "1.2.3.256" or "010.1.1.1" are not taken for names.
func validHostName(h []byte) bool {
	if len(h) == 0 || len(h) > 254 || len(h) == 254 && h[253] != '.' {
		return false
	}
	numeric := true
	label := 0
	for _, c := range h {
		if !hostTable[c] {
			return false
		}
		if c == '.' {
			if label == 0 {
				return false
			}
			label = 0
			continue
		}
		if c < '0' || c > '9' {
			numeric = false
		}
		label++
		if label > 63 {
			return false
		}
	}
	if numeric {
		return validIPv4(h)
	}
	return true
}

// validIPv4 accepts exactly four decimal octets 0-255 without leading zeros,
// as net/netip does.
func validIPv4(s []byte) bool {
	_, ok := parseIPv4(s)
	return ok
}

// parseIPv4 parses what validIPv4 accepts into its four octets.
func parseIPv4(s []byte) (ip [4]byte, ok bool) {
	fields, val, digits := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || fields == 4 {
				return ip, false
			}
			ip[fields] = byte(val)
			fields++
			val, digits = 0, 0
			continue
		}
		c := s[i]
		if c < '0' || c > '9' || digits > 0 && val == 0 {
			return ip, false // non-digit, or a leading zero
		}
		val = val*10 + int(c-'0')
		digits++
		if val > 255 {
			return ip, false
		}
	}
	return ip, fields == 4
}

// validIPv6 accepts an IPv6 address in RFC 4291 §2.2 text form (without
// brackets and without a zone): eight groups of 1-4 hex digits, one "::"
// standing for one or more zero groups, and an optional dotted-quad tail.
func validIPv6(s []byte) bool {
	_, ok := parseIPv6(s)
	return ok
}

// parseIPv6 parses what validIPv6 accepts into its sixteen bytes.
func parseIPv6(s []byte) (ip [16]byte, ok bool) {
	n, ellipsis, i := 0, -1, 0 // bytes of ip filled; where "::" stands
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis, i = 0, 2
		if i == len(s) {
			return ip, true
		}
	}
	for i < len(s) {
		j, group := i, 0
		for j < len(s) && j-i < 4 && unhexTable[s[j]] != 0xff {
			group = group<<4 | int(unhexTable[s[j]])
			j++
		}
		if j == i {
			return ip, false
		}
		if j < len(s) && s[j] == '.' { // IPv4 tail: the last 32 bits
			v4, ok4 := parseIPv4(s[i:])
			if ellipsis < 0 && n != 12 || n > 12 || !ok4 {
				return ip, false
			}
			copy(ip[n:], v4[:])
			n += 4
			break
		}
		ip[n], ip[n+1] = byte(group>>8), byte(group)
		n += 2
		i = j
		if i == len(s) {
			break
		}
		if s[i] != ':' || n == 16 {
			return ip, false // a fifth hex digit, a stray byte, or a ninth group
		}
		i++
		if i == len(s) {
			return ip, false // trailing single ':'
		}
		if s[i] == ':' {
			if ellipsis >= 0 {
				return ip, false
			}
			ellipsis = n
			i++
		}
	}
	if ellipsis < 0 {
		return ip, n == 16
	}
	if n == 16 {
		return ip, false // "::" must stand for at least one group
	}
	// Move the groups after "::" to the end; zeros fill the gap.
	gap := 16 - n
	copy(ip[ellipsis+gap:], ip[ellipsis:n])
	clear(ip[ellipsis : ellipsis+gap])
	return ip, true
}

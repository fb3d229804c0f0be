package compression

import "github.com/proxyto/proxyto/httpparse"

// field is a header field the compression rules read or rewrite. httpparse
// recognises the framing fields (Known); these are the others.
type field uint8

const (
	fOther field = iota
	fAcceptEncoding
	fContentEncoding
	fContentType
	fCacheControl
	fVary
	numFields
)

// fieldOf classifies a field name, case-insensitively.
func fieldOf(name []byte) field {
	switch len(name) {
	case 4:
		if httpparse.EqualFoldLower(name, "vary") {
			return fVary
		}
	case 12:
		if httpparse.EqualFoldLower(name, "content-type") {
			return fContentType
		}
	case 13:
		if httpparse.EqualFoldLower(name, "cache-control") {
			return fCacheControl
		}
	case 15:
		if httpparse.EqualFoldLower(name, "accept-encoding") {
			return fAcceptEncoding
		}
	case 16:
		if httpparse.EqualFoldLower(name, "content-encoding") {
			return fContentEncoding
		}
	}
	return fOther
}

// splitParams splits "token;params" at its first ';'.
func splitParams(elem []byte) (token, params []byte) {
	for i, c := range elem {
		if c == ';' {
			return httpparse.TrimOWS(elem[:i]), elem[i+1:]
		}
	}
	return httpparse.TrimOWS(elem), nil
}

// nextParam splits the first ';'-separated parameter off params, trimmed.
func nextParam(params []byte) (p, rest []byte) {
	p = params
	for i, c := range params {
		if c == ';' {
			p, rest = params[:i], params[i+1:]
			break
		}
	}
	return httpparse.TrimOWS(p), rest
}

// containsFold reports whether b contains the lower-case literal lit under
// ASCII case folding.
func containsFold(b []byte, lit string) bool {
	for i := 0; i+len(lit) <= len(b); i++ {
		if httpparse.EqualFoldLower(b[i:i+len(lit)], lit) {
			return true
		}
	}
	return false
}

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

// cutParam splits v at its first ';': the trimmed part before (a coding or
// media type, or one parameter) and the rest after.
func cutParam(v []byte) (head, rest []byte) {
	for i, c := range v {
		if c == ';' {
			return httpparse.TrimOWS(v[:i]), v[i+1:]
		}
	}
	return httpparse.TrimOWS(v), nil
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

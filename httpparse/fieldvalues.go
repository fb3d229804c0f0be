package httpparse

// Helpers for packages that read field values proxyto does not parse itself
// (compression reads Accept-Encoding, Content-Type, Cache-Control, Vary).
// They are the ones the parser uses, so every package splits lists and
// folds case the same way.

// NextListElem splits the first element off a comma-separated field value
// (RFC 9110 §5.6.1) and trims its OWS. Empty elements come back empty.
func NextListElem(v []byte) (elem, rest []byte) { return nextListElem(v) }

// TrimOWS trims leading and trailing SP and HTAB.
func TrimOWS(b []byte) []byte { return trimOWS(b) }

// EqualFoldLower reports whether a equals lit, a lower-case ASCII literal,
// under ASCII case folding.
func EqualFoldLower(a []byte, lit string) bool { return equalFoldLower(a, lit) }

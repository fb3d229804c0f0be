package upstream

import "encoding/base64"

// AppendConnectLine appends the first lines of a CONNECT request to an HTTP
// upstream: the request line and Host for authority ("host:port"), and
// Proxy-Authorization when hasAuth. The caller appends the client's
// end-to-end headers and the final CRLF.
func AppendConnectLine(dst, authority []byte, user, pass []byte, hasAuth bool) []byte {
	dst = append(dst, "CONNECT "...)
	dst = append(dst, authority...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, authority...)
	dst = append(dst, "\r\n"...)
	if hasAuth {
		dst = AppendProxyAuthorization(dst, user, pass)
	}
	return dst
}

// AppendProxyAuthorization appends "Proxy-Authorization: Basic ...\r\n".
func AppendProxyAuthorization(dst, user, pass []byte) []byte {
	dst = append(dst, "Proxy-Authorization: Basic "...)
	// Join user:pass in a stack buffer when short, the common case, so no
	// allocation happens per request.
	var small [192]byte
	raw := append(small[:0], user...)
	raw = append(raw, ':')
	raw = append(raw, pass...)
	dst = base64.StdEncoding.AppendEncode(dst, raw)
	return append(dst, "\r\n"...)
}

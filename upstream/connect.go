package upstream

import "github.com/proxyto/proxyto/httpparse"

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
		dst = append(dst, "Proxy-Authorization: "...)
		dst = httpparse.AppendBasicAuth(dst, user, pass)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

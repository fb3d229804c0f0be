// Package upstream reaches upstream proxies, in two layers:
//
//	Dialer.Dial     transport: DNS, allow/deny and loop checks, TCP connect,
//	                and for https upstreams the TLS handshake, bridged to a
//	                socketpair so the event loop sees a plain stream
//	                (bridge.go, internal/bridge). It blocks: the engine runs it off the event
//	                loops, in its dial pool.
//	Handshake       protocol, driven on the event loop without blocking:
//	                Connect (an HTTP CONNECT and its answer), Socks5 (RFC 1928
//	                and 1929), Forward (a plain-HTTP request's head, rewritten
//	                for the upstream).
//
// The connection pools are not here but in the engine: a pooled connection
// is a gnet connection, usable only on its own event loop and closed by
// gnet's callbacks, which only the engine sees.
//
// Errors come back as *proxystatus.Error values carrying the RFC 9209 type the
// client will see (Classify).
package upstream

// Package upstream reaches upstream proxies, in three layers:
//
//	Dialer.Dial      transport: DNS, allow/deny and loop checks, TCP connect
//	                 (blocking: runs off the event loops, in the engine's dial pool)
//	  └ TLS          for https upstreams: handshake, then a socketpair bridge so
//	                 the event loop sees a plain stream (bridge.go, internal/bridge)
//	Connect*         protocol, on the event loop: HTTP CONNECT request bytes
//	                 (connect.go) or the SOCKS5 exchange (socks5.go)
//
// Errors come back as *proxystatus.Error values carrying the RFC 9209 type the
// client will see (Classify).
package upstream

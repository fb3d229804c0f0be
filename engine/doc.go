// Package engine is proxyto's gateway: the gnet event handler, the client
// connections, and the exchanges that carry each request or CONNECT through
// the upstream proxy its X-Proxy-To (or its route) names.
// docs/ARCHITECTURE.md describes it;
// docs/behaviour.md is what it must do.
//
// Call tree (→ on an event loop, ⇢ off the loops):
//
//	Engine.Start
//	├⇢ gnet loops          each accepts on its own SO_REUSEPORT listener
//	├⇢ tlsfront.Server     TLS listener: PROXY header, handshake, then
//	│                      tlslistener.go: handoffTLS ⇢ Engine.Register
//	├⇢ ticker              every 5 ms: loopState.scan on loops with work
//	│
//	handler.OnOpen         → client.go: clientConn (limits; a PROXY peer's
//	│                        wait for its header: readProxy, then limits)
//	handler.OnTraffic      → client.go: readHead → begin (draining, rate)
//	│                      → select.go: choose (X-Proxy-To or route, auth, order)
//	│  ├ CONNECT           → tunnel.go: tunnelExchange.start → dial
//	│  └ other methods     → forward.go: httpExchange.start → pool, or dial
//	│                        dial.go ⇢ dial pool: VerifyUser, DNS (cache), rules,
//	│                        connect, TLS; failures reported to health (health.go)
//	│                        ⇢ EventLoop.Enroll(upstream)
//	handler.OnOpen         → dial.go: openUpstream → the exchange's upstreamOpened:
//	│                        upstream.Handshake.Start (CONNECT, SOCKS5, the head)
//	handler.OnTraffic      → exchange: Handshake.Feed (its outcome to health),
//	│                        then tunnel.Pipe / Relay (a response compressed
//	│                        through a Pipe's Transform: forward.go encoder)
//	handler.OnClose        → exchange, then the client connection's finish
//	loopState.scan         → pipes' and relays' Service, deadlines, pool expiry
//
// Every error proxyto answers itself is a *proxystatus.Error rendered in one
// place (clientConn.fail). Nothing touches a connection after gnet's OnClose
// for it.
package engine

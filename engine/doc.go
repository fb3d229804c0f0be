// Package engine is proxyto's gateway: a gnet event handler and the
// per-connection state machine that carries each request or CONNECT through
// the upstream proxy its X-Proxy-To names.
//
// Call tree (→ on an event loop, ⇢ off the loops):
//
//	Engine.Start
//	├⇢ gnet loops        each accepts on its own SO_REUSEPORT listener
//	├⇢ ticker            every 5 ms: Execute(loopState.scan) on loops with work
//	│
//	OnOpen(client)       → limits, then session{stateReadingHead}
//	OnTraffic(client)    → session.readHead: Peek → httpparse.Request.Parse → Discard
//	│  ├ CONNECT         → startDial (client paused) ⇢ dialPool: DNS, checks,
//	│  │                   connect, TLS ⇢ EventLoop.Enroll(upstream)
//	│  └ GET/POST/...    → same dial (or a pooled upstream), then forward
//	OnOpen(upstream)     → stateHandshake: write CONNECT / SOCKS5 greeting / request
//	OnTraffic(upstream)  → handshake reply: 2xx → "200 Connection established",
//	│                      tunnel.Relay.Start → stateRelaying
//	OnTraffic(either)    → tunnel.Relay.OnTraffic (backpressure, half-close)
//	OnClose(either)      → tunnel.Relay.OnClose; session ends once both are closed
//	loopState.scan       → Relay.Service (resume, flush, FIN), deadlines
//
// Every error proxyto answers itself is a *proxystatus.Error rendered in one
// place (session.fail). A session never touches a connection after gnet's
// OnClose for it.
package engine

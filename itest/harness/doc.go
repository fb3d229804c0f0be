// Package harness starts the processes and servers that proxyto's integration
// tests run against: the proxyto binary itself, a scriptable upstream proxy
// (WireUpstream), HTTP/TLS and raw TCP origins, Debian's squid and tinyproxy,
// and curl.
//
// Everything listens on 127.0.0.1 on a port picked at run time, is bounded in
// time, and is stopped by PID or closed in t.Cleanup. Only the standard library
// is used. The engine's in-process tests (engine/inproc_*_test.go) start the
// same servers, which is why this package must not import the engine.
//
//	test ──► proxyto (built once per test binary) ──► WireUpstream | Socks5Server | squid | tinyproxy ──► origin
package harness

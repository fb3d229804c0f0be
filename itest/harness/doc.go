// Package harness starts the processes and servers that proxyto's integration
// tests run against: the proxyto binary itself, a scriptable upstream proxy
// (TestUpstream), HTTP/TLS and raw TCP origins, Debian's squid and tinyproxy,
// and curl.
//
// Everything listens on 127.0.0.1 on a port picked at run time, is bounded in
// time, and is stopped by PID or closed in t.Cleanup. Only the standard library
// is used.
//
//	test ──► proxyto (built once per test binary) ──► TestUpstream | squid | tinyproxy ──► origin
package harness

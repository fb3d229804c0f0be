// Package httpparse is proxyto's pure, allocation-free HTTP/1.x codec layer:
//
//   - [Request.Parse] and [Response.Parse] parse a message head held in a
//     caller's buffer into byte offsets ([Span]) without copying, returning
//     [ErrNeedMore] until the head is complete, so the engine can
//     Peek → Parse → Discard(n);
//   - one hop-by-hop table (fixedHop) and one function (markHop) decide
//     which header lines are re-emitted upstream by AppendEndToEnd;
//   - [UpstreamList.Parse] reads the X-Proxy-To grammar (docs/behaviour.md, "X-Proxy-To");
//   - [ChunkScanner] finds where a chunked body ends while it streams through
//     unchanged;
//   - [ProxyHeader.Parse] reads a PROXY protocol v1 or v2 header, and
//     [ProxyPeers] says which peers must send one.
//
// Nothing here does I/O, logs, or keeps state between calls beyond what the
// caller owns. No type is safe for concurrent use; each connection owns its
// own Request, Response, UpstreamList and ChunkScanner.
//
// Error values never contain bytes of the input, so they are safe to log and to
// put in a 400 body: the input may hold credentials.
package httpparse

//go:generate go run gen_tables.go

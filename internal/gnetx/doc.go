// Package gnetx is the one place where proxyto depends on gnet's internals
// and on gnet behaviour its documentation does not promise. gnet v2.9.7 (the
// version go.mod pins; TestGnetVersion fails on any other) has no read
// backpressure, no half-close, and drops unsent bytes when it closes a
// connection; proxyto builds those on top of a few accesses and assumptions,
// all listed here with the gnet source they rely on (paths inside the gnet
// module) and how each is checked:
//
// Internals reached (found by reflection once, checked by SelfCheck at
// start-up and by TestLayout):
//
//  1. conn.loop.poller.fd, the loop's epoll descriptor (connection_unix.go
//     type conn; eventloop_unix.go:46; pkg/netpoll/poller_epoll_default.go:36):
//     Pause and Resume re-mask a connection's events with EPOLL_CTL_MOD, using
//     the masks gnet's default level-triggered poller uses
//     (pkg/netpoll/defs_poller_epoll.go:37-39).
//  2. conn.outboundBuffer (connection_unix.go type conn; an exported type of
//     pkg/buffer/elastic): StealOutbound takes the bytes gnet would drop at
//     close.
//  3. The listening descriptors of the loops (WithReusePort: one per loop,
//     engine_unix.go:191): RetireListeners finds them in /proc/self/fd and
//     dup3s idle listeners over them, because gnet cannot stop accepting
//     without stopping.
//
// Behaviour assumed (each checked by a test in this package):
//
//  4. A paused connection may still get OnTraffic: conn.write re-arms
//     EPOLLIN|EPOLLOUT when it buffers (connection_unix.go:165,178) and
//     eventloop.write re-arms EPOLLIN when it drained (eventloop_unix.go:348).
//     Write through End-like wrappers must re-pause after writing, and a
//     reader must tolerate a rare read on a paused connection
//     (TestRearmAfterBufferedWrite).
//  5. Bytes OnTraffic leaves unread stay in the connection's inbound buffer
//     and are offered again (eventloop_unix.go:284) (TestUnreadBytesStay).
//  6. A bare EPOLLHUP or EPOLLERR (both halves shut, or a reset) closes the
//     connection without reading it, even with bytes in the socket
//     (connection_linux.go:32) (TestBareHangupClosesUnread).
//  7. OnClose runs before gnet closes the descriptor and before it releases
//     the buffers (eventloop_unix.go:368-386): Dup, Peek and StealOutbound
//     work inside OnClose (TestOnCloseBeforeClose).
//  8. After OnClose, gnet's close makes one non-blocking writev and drops what
//     the socket did not take (eventloop_unix.go:371): close-after-drain is
//     the caller's job.
//  9. EventLoop.Enroll dups the descriptor of a net.Conn, closes the
//     original, and runs OnOpen on the loop with the context given
//     (eventloop_unix.go:113-200); Peek slices alias the loop's read buffer
//     and die with the callback (connection_unix.go:349).
//
// Unexported functions called (go:linkname; checked by SelfCheck and
// TestRegister):
//
//  10. newStreamConn and (*eventloop).register0 (connection_unix.go,
//     eventloop_unix.go:214), the two steps Enroll ends in: Register gives a
//     socket the loop connected itself to gnet without Enroll's goroutine
//     hand-offs, and sets its context (conn.ctx, found by reflection) before
//     OnOpen, as Enroll does.
//
// The engine and the tunnel package reach gnet internals only through this
// package. docs/ARCHITECTURE.md explains why each assumption is there.
package gnetx

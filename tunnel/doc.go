// Package tunnel relays bytes between two gnet connections on the same event
// loop, with what gnet v2.9.7 lacks built on top:
//
//   - backpressure: a side is paused (its read interest masked in the loop's
//     epoll set, see poll.go) while its peer has HighWater bytes or more queued,
//     and resumed by Service once the queue fell to LowWater;
//   - half-close: when one side sends FIN, gnet closes that connection; the
//     relay first takes the bytes gnet still held for it and keeps writing the
//     other direction to a duplicate of its socket (a sink), and forwards the
//     FIN to the peer once the peer's queue drained (shutdown SHUT_WR);
//   - close-after-drain: nothing queued is dropped when one side ends; the
//     other is closed only once its queue is empty (or the caller aborts).
//
// A Relay is driven by its owner (the engine) from gnet callbacks on the one
// loop both connections belong to: OnTraffic, OnClose, and a periodic Service
// while NeedsService reports true. It never touches a connection after that
// connection's OnClose.
package tunnel

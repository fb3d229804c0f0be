// Package tunnel is the only code in proxyto that moves bytes between two
// connections. Everything it relays goes through a Pipe: one direction, from
// a source End to a destination End, within a Framing that says how many of
// the bytes belong to the message (a Content-Length count, a chunked body
// followed by ChunkScanner, or no limit for tunnels). Plain-HTTP request and
// response bodies are one Pipe each; a tunnel (CONNECT, or a connection
// upgraded after 101) is a Relay: two unlimited Pipes plus half-close.
//
// On top of gnet, which lacks them, the package provides:
//
//   - backpressure: a Pipe pauses its source (read interest masked in the
//     loop's epoll set, see internal/gnetx) while its destination has
//     HighWater bytes or more queued, and its owner resumes it (Service) once
//     the queue fell to LowWater;
//   - half-close: when one side of a Relay sends FIN, gnet closes that
//     connection; the Relay first takes the bytes gnet still held for it and
//     keeps writing the other direction to a duplicate of its socket (a sink),
//     and forwards the FIN to the peer once the peer's queue drained;
//   - close-after-drain: nothing queued is dropped when one side ends; the
//     other is closed only once its queue is empty (or the owner aborts).
//
// Pipes and Relays are driven by their owner (the engine) from gnet
// callbacks on the one loop both connections belong to, and from a periodic
// Service while NeedsService reports true. They never touch a connection
// after that connection's OnClose. docs/ARCHITECTURE.md describes the relay.
package tunnel

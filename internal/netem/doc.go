// Package netem emulates wide-area links on loopback for tests and benchmarks: one-way latency,
// jitter, datagram loss, bandwidth caps and addresses that never answer, wrapped around real
// net.Conn, net.Listener and net.PacketConn values.
//
// Vocabulary: a Link describes the path between the wrapped endpoint and everyone it talks to,
// as two Dirs seen from that endpoint (Send: what it writes, Recv: what it reads). A Dir is one
// direction: a token bucket (Rate, Burst, or a shared Bucket) followed by a delay line (Delay ±
// Jitter). Wrapping only one end of a connection is enough: its Send delay plus its Recv delay is
// the round-trip time both ends see.
//
// Flow: every chunk written (or datagram sent) is copied, stamped with its release time
// (departure from the token bucket + delay + jitter, never earlier than the chunk before it, so
// a stream is never reordered) and queued; one goroutine per direction drains the queue, handing
// each chunk on when its time comes. Reads work the same way in the other direction: a goroutine
// reads the real socket as fast as it delivers, stamps and queues, and Read returns a chunk once
// it is released. Latency therefore delays bytes without capping throughput (a delay line, not a
// sleep per read); only Rate and the queue bound (Dir.Buffer, like a socket buffer) do.
//
// Every goroutine belongs to the value that started it and is stopped and waited for by its
// Close. Close is abrupt: bytes still in the delay line are dropped, as when a link goes down.
package netem

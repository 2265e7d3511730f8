// Package utp is uTP, the Micro Transport Protocol of BEP 29: reliable, ordered byte streams
// over UDP with LEDBAT congestion control, as BitTorrent clients use for peer connections
// beside TCP. Some peers (uTorrent's defaults, libtorrent with TCP off, many behind NATs) take
// only uTP.
//
// Vocabulary: a Socket owns one net.PacketConn (in magnetget, a DHT node's UDP socket) and runs
// every connection on it; a Conn is one connection, a net.Conn. Packets carry a connection id:
// the dialler picks id r, sends its SYN with r and its later packets with r+1, and receives on
// r; the other side receives on r+1 and sends with r. Connections are keyed by (remote
// address, receive id), so a packet from another address never reaches a connection.
//
// Flow: DialContext sends a SYN (sequence number 1) and returns when the peer's ST_STATE
// answers it; an incoming SYN makes a connection that waits, with a small window, in a bounded
// backlog for Accept (after Listen). Data packets take one sequence number each; every packet
// acknowledges the last sequence number received in order, and a selective ack extension names
// the ones received beyond it. A packet is resent when three later ones are acknowledged after
// its last transmission, or when the retransmission timeout (from the measured round trip, at
// least 250 ms) passes. The window grows by LEDBAT (RFC 6817: a 100 ms queueing-delay target,
// from the one-way delays the peer echoes) after a slow start, and shrinks on loss. Close sends
// a FIN after the data; the FIN takes a sequence number like data.
//
// Datagrams that are not uTP (KRPC starts with 'd') go to PacketConn, which the DHT node reads:
// the DHT and uTP share one port, as in other clients.
//
// Goroutines: a Socket runs two, a reader and a timer, and Close waits for both. Connections
// have none. Bounds are in Config; see also doc/THREATS.md.
package utp

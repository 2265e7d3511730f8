// Package peerwire is the BitTorrent peer wire protocol shared by metadata and swarm: the BEP 3
// handshake, message framing for BEP 3, BEP 6 (fast extension) and BEP 10 (extension protocol)
// messages, and the BEP 10 extended handshake.
//
// Vocabulary: a "peer" is a remote BitTorrent client reached over TCP (a DHT "node" is something
// else and lives in package dht). A Conn is one handshaken TCP connection for one infohash.
//
// Protocol flow on a Conn:
//
//  1. Dial writes our 68-byte handshake and reads the peer's; Accept reads the first 48 bytes of
//     theirs (protocol string, reserved bits, infohash), checks the infohash is one we serve, answers
//     with our full handshake and then reads their peer id. Either way the deadline is Options.Timeout
//     and cancelling ctx unblocks the I/O at once.
//     Accept also answers Message Stream Encryption (MSE/PE, "protocol encryption"), which
//     libtorrent and aria2 try first: when the first 20 bytes are not "\x13BitTorrent protocol"
//     and Options.InfoHashes is set, it runs the MSE responder (anacrolix/torrent/mse) with those
//     infohashes as secret keys, picks plaintext when the initiator offers it and RC4 otherwise,
//     and reads the BEP 3 handshake from the resulting stream. Every later read and write of that
//     Conn goes through the stream (an RC4 Conn gives up the writev path). Dial opens in plaintext
//     and, with Options.EncryptedRetry, redials with MSE when a peer hangs up on that.
//  2. When both sides set the extension-protocol reserved bit, each side then sends its BEP 10
//     extended handshake (message 20, extended id 0). Dial and Accept send ours; ReadMsg records
//     theirs (PeerExt) when it arrives, so callers read messages until PeerExt is filled in.
//  3. After that the connection carries length-prefixed messages. ReadMsg bounds every length before
//     allocating (MaxMessageLen, MaxBitfieldLen), allocates a body only as its bytes arrive, cuts
//     off a peer that stops mid-message after Options.MessageTimeout, and checks the fixed-size
//     messages exactly. ReadMsgInto offers a Piece's block to the caller's buffer only once it has
//     wholly arrived, and skips blocks the caller refuses. Bencoded payloads are checked for
//     nesting (MaxBencodeDepth) and decoded with strings capped at the payload's length.
//
// Concurrency: one goroutine may call ReadMsg (and Unread) while other goroutines call WriteMsg,
// WriteMsgs, PeerExt, Close and SetDeadline; writes are serialised by a mutex.
package peerwire

// Package realclient drives real BitTorrent clients (python3-libtorrent,
// aria2c, transmission-show) on loopback so tests can check magnetget's
// interoperability and compare its speed. Only tests import it; helpers that
// take a *testing.T live in the rctest sub-package.
//
// Vocabulary: a "node" is a DHT (UDP) endpoint, a "peer" a BitTorrent (TCP)
// endpoint. libtorrent uses one port for both: a session listening on
// 127.0.100.1:P has its DHT node on udp 127.0.100.1:P and its peer listener
// on tcp 127.0.100.1:P.
//
// Flow of a typical interop test:
//
//  1. MakePayload writes deterministic data and a v1 .torrent (no trackers).
//  2. StartLibtorrentDHT starts N libtorrent DHT nodes in one python process,
//     one per 127.0.K.1 address, each on an ephemeral port; WaitNodes waits
//     until their routing tables fill.
//  3. StartLibtorrentSeeder seeds the payload from 127.0.100.1 and, given a
//     bootstrap list, forces a DHT announce; WaitAnnounced returns once its
//     own get_peers lookup sees itself.
//  4. A downloader (LibtorrentDownload, Aria2Download or magnetget's own
//     packages) fetches the magnet via the DHT; CompareContent checks the
//     bytes.
//
// Every child runs in its own process group and is killed when its context
// ends, its MaxLifetime passes, or Close is called; lt.py also exits when its
// stdin closes, so a crashed test binary leaves nothing behind. Nothing here
// reaches beyond loopback: configs refuse non-loopback addresses and
// trackers, and every client's LSD/UPnP/NAT-PMP is off.
//
// Settings the clients need on a private loopback network are explained in
// /work/shared/NOTES-real-clients.md; lt.py applies them.
package realclient

// Package torrentfile creates, writes, loads and validates .torrent files: BitTorrent v1 (BEP 3),
// v2 (BEP 52) and hybrid (one info dict carrying both).
//
// Vocabulary: the "info dict" is the bencoded dictionary whose SHA-1 is the infohash; a "MetaInfo"
// is the whole .torrent file (info dict plus trackers, web seeds, comment and so on). The info dict
// is always kept as raw bytes (metainfo.MetaInfo.InfoBytes) so that the infohash of a loaded or
// fetched torrent never changes by being decoded and re-encoded.
//
// Create walks a file or directory and builds a v1 torrent whose info dict is byte-for-byte the one
// mktorrent makes for the same tree and piece length (and libtorrent's create_torrent, given the
// files in this order), so all three agree on the infohash:
//   - files are ordered by their path inside the tree, compared byte by byte on the '/'-joined
//     path (strcmp order, as mktorrent does). This differs from comparing component by component
//     when a name holds a byte below '/' ("a-c" sorts before "a/b" here); mktorrent's order is
//     the one real v1 torrents use (libtorrent's add_files keeps directory order for v1 and only
//     sorts by component for v2, which is a different infohash anyway);
//   - hidden files (names starting with '.') are included, as mktorrent includes them;
//   - zero-length files are included; empty directories leave no trace (a torrent has no
//     directories of its own);
//   - a symlink whose target resolves to a regular file inside the shared tree is included as a
//     regular file under the link's own name; a symlink to a directory, a dangling symlink and one
//     whose target lies outside the tree are skipped, so a torrent never leaks files the user did
//     not put in the tree and never loops;
//   - fifos, sockets and devices are skipped.
//
// Pieces are hashed from one sequential read of the files in big chunks, with SHA-1 spread over
// Options.Workers goroutines.
//
// v2 and hybrid (CreateTorrent with Options.V2 or Options.Hybrid; LoadTorrent, ParseTorrent,
// FromInfoV2, WriteTorrent, Assemble): a v2 info dict has a "file tree" whose files each carry the
// root of their own SHA-256 merkle tree (internal/merkle); the piece layers sit outside the info
// dict, in the .torrent's "piece layers", each checked against its root. CreateTorrent lays a tree
// out exactly as libtorrent's create_torrent does, so both agree on both infohashes: files ordered
// by path component by component (the order of the file tree's keys), a BEP 47 padding file
// (".pad/<size>", attr "p") before every file that would not start on a piece boundary, attr "x"
// on files executable by their owner. Load and Parse still read a hybrid through its v1 half and
// refuse a v2-only torrent with ErrUnsupported, for callers that can only join v1 swarms.
//
// Load, Parse and FromInfo validate what they read and return errors wrapping ErrInvalid (or
// ErrTooLarge, ErrUnsupported) that say what is wrong; Create's errors about its input wrap ErrEmpty
// or ErrBadOptions.
package torrentfile

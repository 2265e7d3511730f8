// Package torrentfile creates, writes, loads and validates BitTorrent v1 .torrent files (BEP 3).
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
// Load, Parse and FromInfo validate what they read and return errors wrapping ErrInvalid (or
// ErrTooLarge, ErrUnsupported) that say what is wrong; Create's errors about its input wrap ErrEmpty
// or ErrBadOptions.
package torrentfile

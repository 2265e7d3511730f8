package torrentfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// Errors callers may branch on. Every error returned by this package that is about the content of a
// torrent, of the tree being shared or of Options wraps one of these.
var (
	// ErrInvalid: the .torrent file or info dict is malformed.
	ErrInvalid = errors.New("invalid torrent")
	// ErrTooLarge: the .torrent file exceeds MaxFileSize bytes.
	ErrTooLarge = errors.New("torrent file too large")
	// ErrUnsupported: a well-formed torrent this program cannot use (BitTorrent v2-only).
	ErrUnsupported = errors.New("unsupported torrent")
	// ErrEmpty: Create found no data to share (no files, or only zero-length ones).
	ErrEmpty = errors.New("nothing to share")
	// ErrBadOptions: Options given to Create are unusable (piece length, name).
	ErrBadOptions = errors.New("bad create options")
)

// CreatedBy is the "created by" value of torrents this package makes.
const CreatedBy = "magnetget"

// Options for Create. The zero value works.
type Options struct {
	// PieceLength in bytes; 0 picks one with AutoPieceLength. Otherwise it must be a power of two
	// between MinPieceLength and MaxPieceLength.
	PieceLength int64
	// Name of the torrent (the file name, or the top directory); "" uses the base name of the path.
	Name string
	// Comment stored in the .torrent ("" = none).
	Comment string
	// Trackers: the first becomes "announce"; with more than one, each gets its own tier in
	// "announce-list" (BEP 12), as mktorrent does with several -a. Empty and repeated URLs are
	// dropped.
	Trackers []string
	// WebSeeds become "url-list" (BEP 19).
	WebSeeds []string
	// Progress, if set, is called from the goroutine that called Create with the number of bytes
	// hashed so far and the total, after each chunk of a few MiB.
	Progress func(done, total int64)
	// Workers hashing pieces in parallel; 0 = GOMAXPROCS.
	Workers int
	// V2 makes a BitTorrent v2-only torrent (BEP 52), Hybrid a v1+v2 one (one info dict, two
	// infohashes, BEP 47 padding so that v1 pieces are v2 pieces). At most one may be set; both
	// need CreateTorrent. The piece length must be at least 16 KiB (MinPieceLength already is).
	V2, Hybrid bool
}

// Write encodes mi as a .torrent file. The info dict is written verbatim.
func Write(w io.Writer, mi *metainfo.MetaInfo) error {
	if mi == nil || len(mi.InfoBytes) == 0 {
		return fmt.Errorf("write torrent: %w: no info dict", ErrInvalid)
	}
	b, err := bencode.Marshal(mi)
	if err != nil {
		return fmt.Errorf("write torrent: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write torrent: %w", err)
	}
	return nil
}

// FromInfo builds a MetaInfo around a bencoded info dict kept verbatim (so its infohash is
// unchanged), with trackers laid out as Options.Trackers describes. The info dict is validated as
// Load validates it.
func FromInfo(info []byte, trackers []string) (*metainfo.MetaInfo, error) {
	mi, _, err := FromInfoParsed(info, trackers)
	return mi, err
}

// FromInfoParsed is FromInfo that also returns the decoded info dict, so a
// caller that needs both decodes a large dict (10k files) once, not twice.
func FromInfoParsed(info []byte, trackers []string) (*metainfo.MetaInfo, *metainfo.Info, error) {
	if err := checkDict(info, "info dict"); err != nil {
		return nil, nil, err
	}
	parsed, err := ParseInfo(info)
	if err != nil {
		return nil, nil, err
	}
	mi := &metainfo.MetaInfo{
		InfoBytes:    bytes.Clone(info),
		CreatedBy:    CreatedBy,
		CreationDate: time.Now().Unix(),
	}
	setTrackers(mi, trackers)
	return mi, parsed, nil
}

// InfoHash returns the SHA-1 of mi's info dict: the v1 infohash.
func InfoHash(mi *metainfo.MetaInfo) [20]byte {
	return mi.HashInfoBytes()
}

// setTrackers fills announce and announce-list the way mktorrent does: one tracker goes in
// "announce" alone, several also each get their own tier (tried in order, as BEP 12 says).
func setTrackers(mi *metainfo.MetaInfo, trackers []string) {
	var list []string
	seen := make(map[string]bool)
	for _, t := range trackers {
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		list = append(list, t)
	}
	mi.Announce, mi.AnnounceList = "", nil
	if len(list) == 0 {
		return
	}
	mi.Announce = list[0]
	if len(list) > 1 {
		for _, t := range list {
			mi.AnnounceList = append(mi.AnnounceList, []string{t})
		}
	}
}

// Package storage maps a torrent's pieces onto the files of its info dictionary and reads and
// writes them in place with positioned I/O (pread/pwrite through os.File.ReadAt/WriteAt, no
// mmap), so memory use does not grow with the torrent and files whose offsets are not
// page-aligned need no special care.
//
// Vocabulary: the torrent is one byte stream, the concatenation of its files in info-dict
// order; a piece is a PieceLength slice of that stream (the last one may be shorter); a file's
// Offset is where it starts in the stream.
//
// What the output directory may hold is not trusted. Names from the torrent are sanitised
// (layout.go); every content file is then opened beneath the directory's descriptor without
// following any symlink (tree_unix.go: openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or
// one O_NOFOLLOW element at a time), and truncated or preallocated through its descriptor. A
// download locks its state (ErrBusy) and writes only files it owns (ErrExists without Force);
// read-only storage, for seeding, changes nothing at all (ErrMismatch when the files are not
// the torrent's). Beside the resume file the info dictionary is kept (LoadInfo).
package storage

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/bencscan"
)

var (
	// ErrBadInfo is wrapped by errors about an info dictionary that cannot be stored.
	ErrBadInfo = errors.New("bad info dictionary")
	// ErrUnsafePath is wrapped by errors about a file name that would escape the output
	// directory or cannot be a file name at all.
	ErrUnsafePath = errors.New("unsafe file path in torrent")
)

// Limits on what we accept from an info dictionary (it may come from an untrusted peer).
const (
	MaxPieceLength = 64 << 20
	MaxFiles       = 1 << 20
	MaxPieces      = 1 << 24
	maxNameLen     = 255
)

// File is one file of the torrent.
type File struct {
	Path   string // relative path with the OS separator, already checked safe
	Length int64
	Offset int64 // start in the torrent's byte stream
	Pad    bool  // BEP 47 padding file: zeros, never read from or written to disk
}

// Layout is the geometry of a torrent: its files and pieces.
type Layout struct {
	Name        string
	Files       []File
	PieceLength int64
	Hashes      [][20]byte
	Total       int64
}

// ParseInfo decodes a verbatim bencoded info dictionary and checks it can be stored safely.
func ParseInfo(info []byte) (*Layout, error) {
	var mi metainfo.Info
	if err := bencscan.DecodeBounded(info, &mi); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInfo, err)
	}
	// metainfo.FileInfo has no attr field: read the BEP 47 attributes apart.
	var attrs struct {
		Files []struct {
			Attr string `bencode:"attr,omitempty"`
		} `bencode:"files"`
	}
	if err := bencscan.DecodeBounded(info, &attrs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInfo, err)
	}
	pad := make([]bool, len(attrs.Files))
	for i, f := range attrs.Files {
		pad[i] = strings.Contains(f.Attr, "p")
	}
	return newLayout(&mi, pad)
}

// NewLayout checks mi and builds its layout. Every name is sanitised here, before any file is
// touched, so a hostile torrent is refused with nothing written.
func NewLayout(mi *metainfo.Info) (*Layout, error) { return newLayout(mi, nil) }

// NewLayoutPadded is NewLayout for a multi-file mi whose files marked in pad are BEP 47 padding
// (never read from or written to disk): the layout of a BitTorrent v2 torrent, whose files
// each start on a piece boundary, built as a v1 stream with padding between them.
func NewLayoutPadded(mi *metainfo.Info, pad []bool) (*Layout, error) { return newLayout(mi, pad) }

func newLayout(mi *metainfo.Info, pad []bool) (*Layout, error) {
	if mi.PieceLength <= 0 || mi.PieceLength > MaxPieceLength {
		return nil, fmt.Errorf("%w: piece length %d", ErrBadInfo, mi.PieceLength)
	}
	if len(mi.Pieces)%20 != 0 || len(mi.Pieces)/20 > MaxPieces {
		return nil, fmt.Errorf("%w: pieces field of %d bytes", ErrBadInfo, len(mi.Pieces))
	}
	if len(mi.Files) > MaxFiles {
		return nil, fmt.Errorf("%w: %d files", ErrBadInfo, len(mi.Files))
	}
	l := &Layout{Name: mi.Name, PieceLength: mi.PieceLength}
	name, err := safeComponent(mi.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: torrent name: %w", ErrUnsafePath, err)
	}
	add := func(rel string, n int64) error {
		if n < 0 || l.Total+n < l.Total || l.Total+n > 1<<53 {
			return fmt.Errorf("%w: file %q length %d", ErrBadInfo, rel, n)
		}
		l.Files = append(l.Files, File{Path: rel, Length: n, Offset: l.Total})
		l.Total += n
		return nil
	}
	if len(mi.Files) == 0 {
		if err := add(name, mi.Length); err != nil {
			return nil, err
		}
	} else {
		seen := make(map[string]bool, len(mi.Files))
		for i, f := range mi.Files {
			p := f.Path
			if len(f.PathUtf8) > 0 {
				p = f.PathUtf8
			}
			if len(p) == 0 {
				return nil, fmt.Errorf("%w: file %d has an empty path", ErrUnsafePath, i)
			}
			parts := []string{name}
			for _, c := range p {
				sc, err := safeComponent(c)
				if err != nil {
					return nil, fmt.Errorf("%w: file %d: %w", ErrUnsafePath, i, err)
				}
				parts = append(parts, sc)
			}
			rel := filepath.Join(parts...)
			if i < len(pad) && pad[i] {
				// Padding files share names (".pad/16384") and never touch the disk.
				if err := add(rel, f.Length); err != nil {
					return nil, err
				}
				l.Files[len(l.Files)-1].Pad = true
				continue
			}
			key := rel
			if seen[key] {
				return nil, fmt.Errorf("%w: file %d: duplicate path %q", ErrUnsafePath, i, rel)
			}
			seen[key] = true
			if err := add(rel, f.Length); err != nil {
				return nil, err
			}
		}
		// A file that is also a directory of another file cannot be created.
		for _, f := range l.Files {
			if f.Pad {
				continue
			}
			for d := filepath.Dir(f.Path); d != "." && d != name; d = filepath.Dir(d) {
				if seen[d] {
					return nil, fmt.Errorf("%w: %q is both a file and a directory", ErrUnsafePath, d)
				}
			}
		}
	}
	n := (l.Total + l.PieceLength - 1) / l.PieceLength
	if int64(len(mi.Pieces)/20) != n {
		return nil, fmt.Errorf("%w: %d piece hashes for %d bytes in pieces of %d", ErrBadInfo, len(mi.Pieces)/20, l.Total, l.PieceLength)
	}
	l.Hashes = make([][20]byte, n)
	for i := range l.Hashes {
		copy(l.Hashes[i][:], mi.Pieces[20*i:])
	}
	return l, nil
}

// reserved holds names Windows cannot create; refusing them everywhere keeps a download
// portable and avoids device files.
var reserved = map[string]bool{"con": true, "prn": true, "aux": true, "nul": true, "conin$": true, "conout$": true}

func init() {
	for _, p := range []string{"com", "lpt"} {
		for _, i := range "0123456789\u00b9\u00b2\u00b3" {
			reserved[p+string(i)] = true
		}
	}
}

// safeComponent checks one path element from the torrent.
func safeComponent(c string) (string, error) {
	switch {
	case c == "", c == ".", c == "..":
		return "", fmt.Errorf("path element %q", c)
	case len(c) > maxNameLen:
		return "", fmt.Errorf("path element of %d bytes", len(c))
	case strings.ContainsAny(c, "/\\\x00"):
		return "", fmt.Errorf("path element %q contains a separator or NUL", c)
	case filepath.IsAbs(c) || filepath.VolumeName(c) != "":
		return "", fmt.Errorf("absolute path element %q", c)
	}
	// Control characters are legal in names here and kept (a torrent made from such files must
	// find them again when seeded); every message that shows a name escapes them instead.
	base := strings.ToLower(c)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	if reserved[strings.TrimRight(base, " ")] {
		return "", fmt.Errorf("reserved name %q", c)
	}
	return c, nil
}

// NumPieces returns the number of pieces.
func (l *Layout) NumPieces() int { return len(l.Hashes) }

// PieceSize returns the length of piece i (the last one may be short).
func (l *Layout) PieceSize(i int) int64 {
	start := int64(i) * l.PieceLength
	return min(l.PieceLength, l.Total-start)
}

// PieceFiles returns the indexes [first, last] of the files that piece i overlaps. Zero-length
// files inside the range are included; callers that care check Length.
func (l *Layout) PieceFiles(i int) (first, last int) {
	start := int64(i) * l.PieceLength
	end := start + l.PieceSize(i)
	first = l.fileAt(start)
	last = first
	for last+1 < len(l.Files) && l.Files[last+1].Offset < end {
		last++
	}
	return first, last
}

// fileAt returns the index of the non-empty file containing stream offset off.
func (l *Layout) fileAt(off int64) int {
	lo, hi := 0, len(l.Files)-1
	for lo < hi { // last file whose Offset <= off, skipping zero-length files at the boundary
		mid := (lo + hi + 1) / 2
		if l.Files[mid].Offset <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	for lo > 0 && l.Files[lo].Offset > off {
		lo--
	}
	for lo < len(l.Files)-1 && l.Files[lo].Offset+l.Files[lo].Length <= off {
		lo++
	}
	return lo
}

// FilePieces returns the range of pieces [first, last] that file f overlaps; ok is false for a
// zero-length file, which needs no piece.
func (l *Layout) FilePieces(f int) (first, last int, ok bool) {
	fi := l.Files[f]
	if fi.Length == 0 {
		return 0, 0, false
	}
	return int(fi.Offset / l.PieceLength), int((fi.Offset + fi.Length - 1) / l.PieceLength), true
}

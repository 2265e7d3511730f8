package torrentfile

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/bencscan"
)

const (
	// MaxFileSize bounds what Load reads: real .torrent files of even huge torrents are a few MiB.
	MaxFileSize = 64 << 20
	// MaxLoadPieceLength bounds the piece length of torrents we accept, so a downloader never has to
	// allocate more than this for one piece. Real torrents stay at or below 64 MiB.
	MaxLoadPieceLength = 1 << 30
	// maxDepth bounds bencode nesting. A v1 torrent needs 5 levels and a hybrid's "file tree" one per
	// directory level; the bound keeps the recursive decoder far from exhausting the stack.
	maxDepth = 256
	// maxTotalLength bounds the sum of file lengths (1 PiB) so that no sum or offset can overflow.
	maxTotalLength = 1 << 50
)

// Load reads and validates the .torrent file at path (at most MaxFileSize bytes). A hybrid torrent
// is read through its v1 half; a v2-only one gives ErrUnsupported (LoadTorrent reads any version).
func Load(path string) (*metainfo.MetaInfo, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	mi, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load torrent %s: %w", path, err)
	}
	return mi, nil
}

// Parse decodes and validates a .torrent file held in memory. The info dict is kept verbatim in
// InfoBytes. Optional top-level fields of the wrong type (a numeric comment, a malformed
// announce-list) are dropped rather than failing the whole file, as other clients do; the info
// dict itself must be valid (see ParseInfo).
func Parse(data []byte) (*metainfo.MetaInfo, error) {
	mi, _, err := parseTop(data)
	if err != nil {
		return nil, err
	}
	if _, err := ParseInfo(mi.InfoBytes); err != nil {
		return nil, err
	}
	return mi, nil
}

// parseTop decodes a .torrent's top level (leniently, as Parse describes) without validating the
// info dict beyond its syntax, and returns the raw top-level values too.
func parseTop(data []byte) (*metainfo.MetaInfo, map[string]bencode.Bytes, error) {
	if len(data) > MaxFileSize {
		return nil, nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxFileSize)
	}
	// Whitespace after the dictionary (an editor's or `echo >>`'s final
	// newline, a CRLF from a download) is not part of the torrent: other
	// clients accept it, and so do we. Anything else after it is refused.
	data = bytes.TrimRight(data, " \t\r\n")
	if err := checkDict(data, "file"); err != nil {
		return nil, nil, err
	}
	var top map[string]bencode.Bytes
	if err := unmarshal(data, &top); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	info, ok := top["info"]
	if !ok {
		return nil, nil, fmt.Errorf("%w: no info dict", ErrInvalid)
	}
	mi := &metainfo.MetaInfo{InfoBytes: info}
	// Optional fields are decoded into fresh values and kept only when they decode completely.
	optional := func(key string, v any) bool { return unmarshal(top[key], v) == nil }
	var s string
	if optional("announce", &s) {
		mi.Announce = s
	}
	var al metainfo.AnnounceList
	if optional("announce-list", &al) {
		mi.AnnounceList = al
	}
	var nodes []metainfo.Node
	if optional("nodes", &nodes) {
		mi.Nodes = nodes
	}
	var date int64
	if optional("creation date", &date) {
		mi.CreationDate = date
	}
	if s = ""; optional("comment", &s) {
		mi.Comment = s
	}
	if s = ""; optional("created by", &s) {
		mi.CreatedBy = s
	}
	if s = ""; optional("encoding", &s) {
		mi.Encoding = s
	}
	var ul metainfo.UrlList
	if optional("url-list", &ul) {
		mi.UrlList = ul
	}
	return mi, top, nil
}

// unmarshal decodes b (already checked by scanValue, so every string length is bounded by len(b))
// into v. Missing values (nil b) decode as an error, which lenient callers ignore.
func unmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return errors.New("missing")
	}
	// The project's one bounded decoder: string lengths capped at len(b), and a panic of the
	// reflection decoder on a type mismatch turned into an error.
	return bencscan.DecodeBounded(b, v)
}

// checkDict checks that data is exactly one syntactically valid bencoded dict; what names data in
// errors.
func checkDict(data []byte, what string) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if data[0] != 'd' {
		return fmt.Errorf("%w: %s is not a bencoded dictionary (starts with %q)", ErrInvalid, what, data[0])
	}
	end, err := scanValue(data, 0)
	if err != nil {
		return err
	}
	if end != len(data) {
		return fmt.Errorf("%w: %d bytes of trailing garbage after the %s", ErrInvalid, len(data)-end, what)
	}
	return nil
}

// scanValue checks the bencoded value starting at data[off] without allocating (the project's one
// bencode scanner, internal/bencscan) and returns the offset just after it. It enforces integer
// syntax, string lengths within the input, string dict keys and maxDepth.
func scanValue(data []byte, off int) (int, error) {
	end, err := bencscan.Scan(data, off, maxDepth)
	if err != nil {
		return end, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return end, nil
}

// ParseInfo decodes and validates a bencoded v1 info dict (the input must already be known to be
// syntactically valid bencode, as Parse and FromInfo check): piece length in 1..MaxLoadPieceLength,
// "pieces" a multiple of 20 bytes with exactly one hash per piece of the total length, a
// non-empty name and file paths made of plain names (no "", ".", "..", '/' or NUL), exactly one
// of "length" and "files", no two files at the same path, and a non-zero total length. A v2-only
// info dict gives ErrUnsupported; a hybrid one is read as v1.
func ParseInfo(b []byte) (*metainfo.Info, error) {
	raw, err := dictFields(b)
	if err != nil {
		return nil, fmt.Errorf("%w: info is not a dictionary: %v", ErrInvalid, err)
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: info: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if _, ok := raw["pieces"]; !ok {
		var version int64
		if unmarshal(raw["meta version"], &version) == nil && version == 2 {
			return nil, fmt.Errorf("%w: BitTorrent v2-only torrent (no v1 pieces)", ErrUnsupported)
		}
		return nil, invalid("no pieces")
	}
	var info metainfo.Info
	field := func(key string, v any, required bool) error {
		rb, ok := raw[key]
		if !ok {
			if required {
				return invalid("no %q", key)
			}
			return nil
		}
		if err := unmarshal(rb, v); err != nil {
			return invalid("%q has the wrong type", key)
		}
		return nil
	}
	if err := field("piece length", &info.PieceLength, true); err != nil {
		return nil, err
	}
	if info.PieceLength <= 0 || info.PieceLength > MaxLoadPieceLength {
		return nil, invalid("piece length %d out of range 1..%d", info.PieceLength, MaxLoadPieceLength)
	}
	if err := field("pieces", &info.Pieces, true); err != nil {
		return nil, err
	}
	if len(info.Pieces)%20 != 0 {
		return nil, invalid("pieces is %d bytes, not a multiple of 20", len(info.Pieces))
	}
	if err := field("name", &info.Name, true); err != nil {
		return nil, err
	}
	if err := checkName(info.Name); err != nil {
		return nil, invalid("name: %v", err)
	}
	if err := field("name.utf-8", &info.NameUtf8, false); err != nil {
		return nil, err
	}
	if _, ok := raw["name.utf-8"]; ok {
		if err := checkName(info.NameUtf8); err != nil {
			return nil, invalid("name.utf-8: %v", err)
		}
	}
	var private int64
	if rb, ok := raw["private"]; ok && unmarshal(rb, &private) == nil {
		p := private == 1
		info.Private = &p
	}
	_ = field("source", &info.Source, false) // informational only

	_, hasLength := raw["length"]
	_, hasFiles := raw["files"]
	var total int64
	switch {
	case hasLength && hasFiles:
		return nil, invalid("both \"length\" and \"files\"")
	case hasLength:
		if err := field("length", &info.Length, true); err != nil {
			return nil, err
		}
		if info.Length < 0 || info.Length > maxTotalLength {
			return nil, invalid("length %d out of range", info.Length)
		}
		total = info.Length
	case hasFiles:
		var err error
		if info.Files, total, err = parseFiles(raw["files"]); err != nil {
			return nil, err
		}
	default:
		return nil, invalid("neither \"length\" nor \"files\"")
	}
	if total == 0 {
		return nil, invalid("total length is zero")
	}
	want := (total + info.PieceLength - 1) / info.PieceLength
	if got := int64(len(info.Pieces) / 20); got != want {
		return nil, invalid("%d piece hashes for %d bytes in pieces of %d (want %d)", got, total, info.PieceLength, want)
	}
	return &info, nil
}

// parseFiles decodes and checks the "files" list of a multi-file info dict.
func parseFiles(b []byte) ([]metainfo.FileInfo, int64, error) {
	files, err := decodeFiles(b)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: info: bad \"files\" list: %v", ErrInvalid, err)
	}
	if len(files) == 0 {
		return nil, 0, fmt.Errorf("%w: info: empty \"files\" list", ErrInvalid)
	}
	out := make([]metainfo.FileInfo, len(files))
	// The paths seen so far form a tree of nodes keyed by (parent node, name), so finding two files
	// at one path, or a file where another file needs a directory, costs one map lookup per path
	// component however deep or numerous the paths are.
	type nodeKey struct {
		parent int
		name   string
	}
	nodes := make(map[nodeKey]int)
	isFile := []bool{false} // by node id; node 0 is the torrent's top directory
	var total int64
	for i, f := range files {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: info: file %d: "+format, append([]any{ErrInvalid, i}, args...)...)
		}
		if f.Length == nil {
			return nil, 0, bad("no length")
		}
		if *f.Length < 0 || *f.Length > maxTotalLength {
			return nil, 0, bad("length %d out of range", *f.Length)
		}
		total += *f.Length
		if total > maxTotalLength {
			return nil, 0, bad("total length over %d", int64(maxTotalLength))
		}
		if err := checkPath(f.Path); err != nil {
			return nil, 0, bad("path %s: %v", showPath(f.Path), err)
		}
		if f.PathUtf8 != nil {
			if err := checkPath(f.PathUtf8); err != nil {
				return nil, 0, bad("path.utf-8 %s: %v", showPath(f.PathUtf8), err)
			}
		}
		// BEP 47 padding files share names like ".pad/16384" and are never written to disk.
		if !strings.Contains(f.Attr, "p") {
			cur := 0
			for j, name := range f.Path {
				id, seen := nodes[nodeKey{cur, name}]
				last := j == len(f.Path)-1
				switch {
				case seen && isFile[id] && last:
					return nil, 0, bad("path %s appears twice", showPath(f.Path))
				case seen && isFile[id]:
					return nil, 0, bad("path %s is inside file %s", showPath(f.Path), showPath(f.Path[:j+1]))
				case seen && last:
					return nil, 0, bad("path %s is both a file and a directory", showPath(f.Path))
				case !seen:
					id = len(isFile)
					isFile = append(isFile, last)
					nodes[nodeKey{cur, name}] = id
				}
				cur = id
			}
		}
		out[i] = metainfo.FileInfo{Length: *f.Length, Path: f.Path, PathUtf8: f.PathUtf8}
	}
	return out, total, nil
}

// showPath quotes a torrent path for an error message, shortened if it is huge.
func showPath(p []string) string {
	s := strings.Join(p, "/")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strconv.Quote(s)
}

// checkPath rejects obviously unsafe or meaningless paths; the downloader checks again where it
// joins them to its directory.
func checkPath(p []string) error {
	if len(p) == 0 {
		return errors.New("empty path")
	}
	for _, c := range p {
		if err := checkName(c); err != nil {
			return err
		}
	}
	return nil
}

func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case s == "." || s == "..":
		return fmt.Errorf("name %q", s)
	case strings.ContainsRune(s, '/'):
		return fmt.Errorf("name %q contains '/'", s)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("name %q contains NUL", s)
	}
	return nil
}

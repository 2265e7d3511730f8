package torrentfile

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/internal/merkle"
)

// InfoV2 is a decoded BitTorrent v2 info dict (BEP 52): a v2-only torrent's, or the v2 half of a
// hybrid one's.
type InfoV2 struct {
	Name        string
	PieceLength int64 // a power of two, at least 16 KiB
	// Files in file tree order (the order of the dict's keys at each level, which bencode sorts).
	// Every non-empty file starts at a piece boundary: pieces never span two files.
	Files []FileV2
	// Single: the file tree holds one file at its top level, so a v2-only torrent is a
	// single-file torrent whose file is named Files[0].Path[0] (libtorrent names the download
	// so, even when Name differs). For a hybrid the v1 layout decides, as libtorrent's does: a
	// directory with one file is multi-file there.
	Single      bool
	TotalLength int64 // sum of the file lengths, without padding
	NumPieces   int64 // sum of the files' piece counts
}

// FileV2 is one file of a v2 file tree.
type FileV2 struct {
	Path       []string // components inside the torrent's top directory
	Length     int64
	PiecesRoot [32]byte // the file's merkle root; zero for an empty file
	Attr       string   // BEP 47 attributes ("x": executable), "" if none
	FirstPiece int64    // index of the file's first piece in the torrent
}

// NumPieces returns how many pieces the file has at pieceLength: 0 for an empty file.
func (f FileV2) NumPieces(pieceLength int64) int64 { return (f.Length + pieceLength - 1) / pieceLength }

// HasPieceLayer reports whether a .torrent carries a piece layer for the file: only files longer
// than one piece have one (for the others the root is the piece's hash).
func (f FileV2) HasPieceLayer(pieceLength int64) bool { return f.Length > pieceLength }

// Torrent is a .torrent file of any BitTorrent version.
type Torrent struct {
	// Meta holds the top-level fields and the info dict verbatim (InfoBytes), whose SHA-1 is the
	// v1 infohash and whose SHA-256 is the v2 one.
	Meta *metainfo.MetaInfo
	V1   *metainfo.Info // the v1 info (nil for a v2-only torrent); for a hybrid, pad files included
	V2   *InfoV2        // the v2 info (nil for a v1-only torrent)
	// PieceLayers maps a file's pieces root to its piece layer (32 bytes per piece), each checked
	// against its root. A .torrent may lack some (peers then supply them through hash requests);
	// files of one piece never have one.
	PieceLayers map[[32]byte][]byte
}

// HashV1 returns the v1 infohash (SHA-1 of the info dict) when the torrent has a v1 half.
func (t *Torrent) HashV1() ([20]byte, bool) {
	if t.V1 == nil {
		return [20]byte{}, false
	}
	return t.Meta.HashInfoBytes(), true
}

// HashV2 returns the v2 infohash (SHA-256 of the info dict) when the torrent has a v2 half.
func (t *Torrent) HashV2() ([32]byte, bool) {
	if t.V2 == nil {
		return [32]byte{}, false
	}
	return InfoHashV2(t.Meta.InfoBytes), true
}

// InfoHashV2 returns the SHA-256 of a bencoded info dict: the v2 infohash. Its first 20 bytes are
// what the DHT, trackers and peer handshakes use for a v2 swarm.
func InfoHashV2(info []byte) [32]byte { return sha256.Sum256(info) }

// LoadTorrent reads and validates a .torrent file of any version (at most MaxFileSize bytes).
// Unlike Load, it accepts v2-only torrents.
func LoadTorrent(path string) (*Torrent, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseTorrent(data)
	if err != nil {
		return nil, fmt.Errorf("load torrent %s: %w", path, err)
	}
	return t, nil
}

// ParseTorrent decodes and validates a .torrent of any version held in memory: a v1 info dict as
// ParseInfo checks it, a v2 one as ParseInfoV2 does, a hybrid's two halves and their agreement
// (same files in the same order, BEP 47 padding putting every file on a piece boundary), and each
// piece layer against its file's root. A piece layer for a root the torrent does not have is
// dropped; one that does not match its root makes the file invalid.
func ParseTorrent(data []byte) (*Torrent, error) {
	mi, top, err := parseTop(data)
	if err != nil {
		return nil, err
	}
	t := &Torrent{Meta: mi}
	if t.V1, t.V2, err = parseAnyInfo(mi.InfoBytes); err != nil {
		return nil, err
	}
	if t.V2 != nil {
		if t.PieceLayers, err = parsePieceLayers(top["piece layers"], t.V2); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// parseAnyInfo decodes a v1, v2 or hybrid info dict (syntax already checked).
func parseAnyInfo(info []byte) (*metainfo.Info, *InfoV2, error) {
	raw, err := dictFields(info)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: info is not a dictionary: %v", ErrInvalid, err)
	}
	if _, ok := raw["meta version"]; !ok {
		v1, err := ParseInfo(info)
		return v1, nil, err
	}
	v2, err := ParseInfoV2(info)
	if err != nil {
		return nil, nil, err
	}
	_, hasPieces := raw["pieces"]
	if !hasPieces {
		return nil, v2, nil
	}
	v1, err := ParseInfo(info)
	if err != nil {
		return nil, nil, err
	}
	if err := checkHybrid(v1, v2); err != nil {
		return nil, nil, err
	}
	return v1, v2, nil
}

// ParseInfoV2 decodes and validates the v2 part of an info dict: "meta version" 2, a piece length
// that is a power of two of at least 16 KiB (and at most MaxLoadPieceLength), a safe name, and a
// file tree of safe names in which each file has a length and, when not empty, a 32-byte pieces
// root. The v1 fields of a hybrid dict are not looked at (ParseTorrent checks them).
func ParseInfoV2(b []byte) (*InfoV2, error) {
	if err := checkDict(b, "info dict"); err != nil {
		return nil, err
	}
	raw, err := dictFields(b)
	if err != nil {
		return nil, fmt.Errorf("%w: info is not a dictionary: %v", ErrInvalid, err)
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: info: "+format, append([]any{ErrInvalid}, args...)...)
	}
	var version int64
	if rb, ok := raw["meta version"]; !ok {
		return nil, invalid("no \"meta version\": not a BitTorrent v2 info dict")
	} else if unmarshal(rb, &version) != nil {
		return nil, invalid("\"meta version\" has the wrong type")
	}
	if version != 2 {
		return nil, fmt.Errorf("%w: info: meta version %d (this program knows version 2)", ErrUnsupported, version)
	}
	v := &InfoV2{}
	if unmarshal(raw["piece length"], &v.PieceLength) != nil {
		return nil, invalid("no \"piece length\" integer")
	}
	if v.PieceLength < merkle.BlockSize || v.PieceLength > MaxLoadPieceLength || v.PieceLength&(v.PieceLength-1) != 0 {
		return nil, invalid("piece length %d is not a power of two in %d..%d", v.PieceLength, merkle.BlockSize, MaxLoadPieceLength)
	}
	if unmarshal(raw["name"], &v.Name) != nil {
		return nil, invalid("no \"name\" string")
	}
	if err := checkName(v.Name); err != nil {
		return nil, invalid("name: %v", err)
	}
	tree, ok := raw["file tree"]
	if !ok {
		return nil, invalid("no \"file tree\"")
	}
	// Each file's path repeats its directories' names (16 bytes a component), which the tree
	// spells once: a deep tree of many small files would turn a few bytes of input into
	// kilobytes of paths. Real trees stay far below this bound.
	w := treeWalker{v: v, components: len(b)/2 + 256}
	if err := w.dir(tree, nil); err != nil {
		return nil, err
	}
	if len(v.Files) == 0 {
		return nil, invalid("file tree holds no files")
	}
	if v.TotalLength == 0 {
		return nil, invalid("total length is zero")
	}
	v.Single = w.topEntries == 1 && len(v.Files) == 1 && len(v.Files[0].Path) == 1
	return v, nil
}

// treeWalker reads a v2 "file tree" depth first, in key order.
type treeWalker struct {
	v          *InfoV2
	topEntries int
	components int // path components still allowed, summed over files
}

func (w *treeWalker) dir(b []byte, path []string) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: info: file tree: "+format, append([]any{ErrInvalid}, args...)...)
	}
	d := bdec{b: b}
	if !d.consume('d') {
		return invalid("%s is not a dictionary", showPath(path))
	}
	seen := make(map[string]bool)
	for !d.consume('e') {
		name, err := d.str()
		if err != nil {
			return invalid("%s: bad key", showPath(path))
		}
		start := d.off
		if err := d.skip(); err != nil {
			return err
		}
		node := b[start:d.off]
		p := append(path[:len(path):len(path)], name)
		if err := checkName(name); err != nil {
			return invalid("%s: %v", showPath(p), err)
		}
		if seen[name] {
			return invalid("%s appears twice", showPath(p))
		}
		seen[name] = true
		if len(path) == 0 {
			w.topEntries++
		}
		fields, err := dictFields(node)
		if err != nil {
			return invalid("%s is not a dictionary", showPath(p))
		}
		props, isFile := fields[""]
		if !isFile {
			if err := w.dir(node, p); err != nil {
				return err
			}
			continue
		}
		if len(fields) != 1 {
			return invalid("%s is both a file and a directory", showPath(p))
		}
		if err := w.file(props, p); err != nil {
			return err
		}
	}
	return nil
}

func (w *treeWalker) file(props []byte, path []string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: info: file %s: "+format, append([]any{ErrInvalid, showPath(path)}, args...)...)
	}
	fields, err := dictFields(props)
	if err != nil {
		return bad("properties are not a dictionary")
	}
	if w.components -= len(path); w.components < 0 {
		return fmt.Errorf("%w: info: file tree: paths too deep for its size (a deep tree of many small files)", ErrInvalid)
	}
	f := FileV2{Path: path}
	if unmarshal(fields["length"], &f.Length) != nil {
		return bad("no \"length\" integer")
	}
	if f.Length < 0 || f.Length > maxTotalLength {
		return bad("length %d out of range", f.Length)
	}
	if rb, ok := fields["attr"]; ok && unmarshal(rb, &f.Attr) != nil {
		return bad("\"attr\" has the wrong type")
	}
	if f.Length > 0 {
		var root string
		if unmarshal(fields["pieces root"], &root) != nil || len(root) != merkle.HashSize {
			return bad("no 32-byte \"pieces root\"")
		}
		copy(f.PiecesRoot[:], root)
	}
	v := w.v
	v.TotalLength += f.Length
	if v.TotalLength > maxTotalLength {
		return bad("total length over %d", int64(maxTotalLength))
	}
	f.FirstPiece = v.NumPieces
	v.NumPieces += f.NumPieces(v.PieceLength)
	v.Files = append(v.Files, f)
	return nil
}

// checkHybrid checks that the v1 half of a hybrid torrent describes the same files as its v2 half:
// the same paths and lengths in the same order once BEP 47 padding files are set aside, every
// non-empty file starting on a piece boundary of the v1 stream, and the same piece length.
func checkHybrid(v1 *metainfo.Info, v2 *InfoV2) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: hybrid torrent: v1 and v2 halves differ: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if v1.PieceLength != v2.PieceLength {
		return bad("piece length %d and %d", v1.PieceLength, v2.PieceLength)
	}
	if len(v1.Files) == 0 { // single-file v1
		f := v2.Files[0]
		if !v2.Single || f.Path[0] != v1.Name || f.Length != v1.Length {
			return bad("v1 is the single file %q of %d bytes", v1.Name, v1.Length)
		}
		return nil
	}
	var off int64
	i := 0
	for _, f := range v1.Files {
		if isPadFile(f) {
			off += f.Length
			continue
		}
		if i >= len(v2.Files) {
			return bad("v1 has more files")
		}
		g := v2.Files[i]
		i++
		if f.Length != g.Length || !equalPath(f.Path, g.Path) {
			return bad("file %d is %s (%d bytes) in v1 and %s (%d bytes) in v2", i-1, showPath(f.Path), f.Length, showPath(g.Path), g.Length)
		}
		if f.Length > 0 && off%v1.PieceLength != 0 {
			return bad("file %s starts at %d, not on a piece boundary (missing padding)", showPath(f.Path), off)
		}
		off += f.Length
	}
	if i != len(v2.Files) {
		return bad("v2 has more files")
	}
	// Padding that fills more than the gap to the next piece would give v1 pieces of no file,
	// and piece i of v1 would no longer be piece i of v2.
	if n := int64(v1.NumPieces()); n != v2.NumPieces {
		return bad("%d v1 pieces but %d v2 pieces (padding longer than needed)", n, v2.NumPieces)
	}
	return nil
}

// isPadFile reports whether a v1 file entry is BEP 47 padding, by its ".pad/<size>" path (the
// decoded FileInfo keeps no attr). A real file under ".pad" is thus taken for padding, and the
// hybrid check then fails on the missing v2 file rather than misreading the torrent.
func isPadFile(f metainfo.FileInfo) bool {
	return len(f.Path) > 0 && f.Path[0] == ".pad"
}

func equalPath(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// parsePieceLayers decodes the top-level "piece layers" dict and checks each layer against the
// root of the file it belongs to. Layers for unknown roots, or for files of one piece, are dropped.
func parsePieceLayers(b []byte, v *InfoV2) (map[[32]byte][]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: piece layers: "+format, append([]any{ErrInvalid}, args...)...)
	}
	files := make(map[[32]byte]FileV2, len(v.Files))
	for _, f := range v.Files {
		if f.HasPieceLayer(v.PieceLength) {
			files[f.PiecesRoot] = f
		}
	}
	d := bdec{b: b}
	if !d.consume('d') {
		return nil, bad("not a dictionary")
	}
	out := make(map[[32]byte][]byte)
	for !d.consume('e') {
		key, err := d.str()
		if err != nil {
			return nil, bad("bad key")
		}
		layer, err := d.str()
		if err != nil {
			return nil, bad("value is not a string")
		}
		if len(key) != merkle.HashSize {
			return nil, bad("key of %d bytes, not a 32-byte pieces root", len(key))
		}
		root := [32]byte([]byte(key))
		f, ok := files[root]
		if !ok {
			continue
		}
		got, err := merkle.RootFromPieceLayer([]byte(layer), v.PieceLength, f.Length)
		if err != nil {
			return nil, bad("file %s: %v", showPath(f.Path), err)
		}
		if got != root {
			return nil, bad("file %s: the piece layer does not hash to the file's pieces root", showPath(f.Path))
		}
		out[root] = []byte(layer)
	}
	return out, nil
}

// readLimited reads a .torrent file of at most MaxFileSize bytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load torrent: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("load torrent %s: %w: %d bytes, more than %d", path, ErrTooLarge, fi.Size(), MaxFileSize)
	}
	// The limit still applies to what is read: a pipe has no size and a file may grow.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load torrent %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("load torrent %s: %w: more than %d bytes", path, ErrTooLarge, MaxFileSize)
	}
	return data, nil
}

// fileOut is a .torrent's top level as written: metainfo.MetaInfo's fields plus "piece layers".
type fileOut struct {
	Announce     string                `bencode:"announce,omitempty"`
	AnnounceList metainfo.AnnounceList `bencode:"announce-list,omitempty"`
	Comment      string                `bencode:"comment,omitempty"`
	CreatedBy    string                `bencode:"created by,omitempty"`
	CreationDate int64                 `bencode:"creation date,omitempty"`
	Encoding     string                `bencode:"encoding,omitempty"`
	Info         bencode.Bytes         `bencode:"info"`
	Nodes        []metainfo.Node       `bencode:"nodes,omitempty"`
	PieceLayers  map[string][]byte     `bencode:"piece layers,omitempty"`
	UrlList      metainfo.UrlList      `bencode:"url-list,omitempty"`
}

// WriteTorrent encodes t as a .torrent file: the info dict verbatim, t.Meta's other fields and,
// for v2 and hybrid torrents, the piece layers.
func WriteTorrent(w io.Writer, t *Torrent) error {
	if t == nil || t.Meta == nil || len(t.Meta.InfoBytes) == 0 {
		return fmt.Errorf("write torrent: %w: no info dict", ErrInvalid)
	}
	mi := t.Meta
	out := fileOut{
		Announce: mi.Announce, AnnounceList: mi.AnnounceList, Comment: mi.Comment, CreatedBy: mi.CreatedBy,
		CreationDate: mi.CreationDate, Encoding: mi.Encoding, Info: mi.InfoBytes, Nodes: mi.Nodes, UrlList: mi.UrlList,
	}
	if len(t.PieceLayers) > 0 {
		out.PieceLayers = make(map[string][]byte, len(t.PieceLayers))
		for root, layer := range t.PieceLayers {
			out.PieceLayers[string(root[:])] = layer
		}
	}
	b, err := bencode.Marshal(out)
	if err != nil {
		return fmt.Errorf("write torrent: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write torrent: %w", err)
	}
	return nil
}

// FromInfoV2 is FromInfo for an info dict of any version, with the piece layers a v2 or hybrid
// torrent carries (nil for v1; layers are checked against the files' roots, and ones for unknown
// roots are dropped). This is what `meta` needs to save a fetched v2 torrent byte-exact: info
// bytes from ut_metadata, piece layers from peers' hashes messages.
func FromInfoV2(info []byte, pieceLayers map[[32]byte][]byte, trackers []string) (*Torrent, error) {
	if err := checkDict(info, "info dict"); err != nil {
		return nil, err
	}
	v1, v2, err := parseAnyInfo(info)
	if err != nil {
		return nil, err
	}
	t := &Torrent{V1: v1, V2: v2, Meta: &metainfo.MetaInfo{InfoBytes: bytes.Clone(info), CreatedBy: CreatedBy}}
	setTrackers(t.Meta, trackers)
	if v2 != nil && len(pieceLayers) > 0 {
		// Round-trip through the file's own encoding so the checks are the ones Parse applies.
		enc := make(map[string][]byte, len(pieceLayers))
		for r, l := range pieceLayers {
			enc[string(r[:])] = l
		}
		b, err := bencode.Marshal(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: piece layers: %v", ErrInvalid, err)
		}
		if t.PieceLayers, err = parsePieceLayers(b, v2); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Assemble returns the bytes of a .torrent made of a verbatim info dict, its piece layers (for v2
// and hybrid torrents; nil otherwise) and trackers laid out as Options.Trackers describes. Its
// infohashes are those of info. No creation date is written, so the same inputs give the same bytes.
func Assemble(info []byte, pieceLayers map[[32]byte][]byte, trackers []string) ([]byte, error) {
	t, err := FromInfoV2(info, pieceLayers, trackers)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := WriteTorrent(&buf, t); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MissingPieceLayers lists the files of t (by index in t.V2.Files) that need a piece layer the
// torrent does not carry: a downloader fetches those from peers with hash requests.
func (t *Torrent) MissingPieceLayers() []int {
	if t.V2 == nil {
		return nil
	}
	var out []int
	for i, f := range t.V2.Files {
		if _, ok := t.PieceLayers[f.PiecesRoot]; f.HasPieceLayer(t.V2.PieceLength) && !ok {
			out = append(out, i)
		}
	}
	return out
}

// PieceV2 locates one piece of a v2 or hybrid torrent (pieces numbered across files in file
// order; in a hybrid, v1 piece i is v2 piece i) and says what it must hash to.
type PieceV2 struct {
	File   int   // index in V2.Files
	Offset int64 // of the piece within its file
	Length int64 // bytes of file data in the piece (short for a file's last piece)
	// Width is how many leaves the piece's hash covers: pass it to merkle.PieceHash.
	Width int64
	// Hash is the piece's expected merkle.PieceHash, valid when Known: a file of one piece
	// hashes to its pieces root; a longer one needs its piece layer, from the .torrent or from
	// peers (hash requests).
	Hash  merkle.Hash
	Known bool
}

// PieceV2 returns piece i of a v2 or hybrid torrent; ok is false for a v1-only torrent or an i
// out of range.
func (t *Torrent) PieceV2(i int64) (p PieceV2, ok bool) {
	v := t.V2
	if v == nil || i < 0 || i >= v.NumPieces {
		return p, false
	}
	// The last file whose first piece is at or before i, skipping empty files (no pieces).
	lo, hi := 0, len(v.Files)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if v.Files[m].FirstPiece <= i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	fi := lo - 1
	for v.Files[fi].Length == 0 || i >= v.Files[fi].FirstPiece+v.Files[fi].NumPieces(v.PieceLength) {
		fi--
	}
	f := v.Files[fi]
	k := i - f.FirstPiece
	p = PieceV2{File: fi, Offset: k * v.PieceLength, Width: merkle.PieceWidth(v.PieceLength, f.Length)}
	p.Length = min(v.PieceLength, f.Length-p.Offset)
	if !f.HasPieceLayer(v.PieceLength) {
		p.Hash, p.Known = f.PiecesRoot, true
		return p, true
	}
	if layer, ok := t.PieceLayers[f.PiecesRoot]; ok {
		copy(p.Hash[:], layer[k*merkle.HashSize:])
		p.Known = true
	}
	return p, true
}

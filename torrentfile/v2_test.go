package torrentfile

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/magnetget/magnetget/internal/merkle"
)

// libtorrentCreateV2 makes a v2-only or hybrid torrent of argv[1] with libtorrent's
// create_torrent, as qBittorrent does (add_files, then create_torrent with the piece length),
// writes it to argv[4] and prints its v1 and v2 infohashes.
const libtorrentCreateV2 = `
import os, sys, libtorrent as lt
path, pl, mode, out = os.path.abspath(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
fs = lt.file_storage()
lt.add_files(fs, path)
flags = lt.create_torrent.v2_only if mode == "v2" else 0
ct = lt.create_torrent(fs, pl, flags=flags)
lt.set_piece_hashes(ct, os.path.dirname(path))
open(out, "wb").write(lt.bencode(ct.generate()))
ih = lt.torrent_info(out).info_hashes()
print(ih.v1, ih.v2)
`

// libtorrentHashes loads a .torrent with libtorrent and prints its v1 and v2 infohashes and the
// number of files it sees (padding included).
const libtorrentHashes = `
import sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
ih = ti.info_hashes()
print(ih.v1, ih.v2, ti.num_pieces())
`

func hex20(h [20]byte, ok bool) string {
	if !ok {
		return strings.Repeat("0", 40)
	}
	return hex.EncodeToString(h[:])
}

func hex32(h [32]byte, ok bool) string {
	if !ok {
		return strings.Repeat("0", 64)
	}
	return hex.EncodeToString(h[:])
}

// v2Tree has nesting where component order and whole-path order differ ("a/b" before "a-c"),
// hidden and executable files, empty files after an unaligned file (libtorrent pads before them),
// sizes off block and piece boundaries, and a file of exactly one piece.
var v2Tree = map[string]int{
	"a/b":           40000,
	"a-c":           70001,
	"a.b":           1,
	"A/x":           32768,
	".h/y":          20000,
	"Z z":           5000,
	"empty":         0,
	"deep/er/est/f": 300000,
	"deep/er/zero":  0,
	"deep/e":        16384,
	"run.sh":        1000,
	"zz/last":       123457,
	"zz/m0":         0,
}

func TestCreateV2MatchesLibtorrent(t *testing.T) {
	needLibtorrent(t)
	base := t.TempDir()
	writeTree(t, base, map[string]int{"single.bin": 1<<20 + 12345, "small.bin": 100})
	multi := filepath.Join(base, "multi")
	writeTree(t, multi, v2Tree)
	if err := os.Chmod(filepath.Join(multi, "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(base, "one")
	writeTree(t, one, map[string]int{"only.bin": 50000})

	for _, tc := range []struct {
		name string
		path string
		log2 []int
	}{
		{"single", filepath.Join(base, "single.bin"), []int{14, 15, 18, 21}},
		{"small", filepath.Join(base, "small.bin"), []int{15}},
		{"multi", multi, []int{14, 15, 16, 19}},
		{"dir-with-one-file", one, []int{15}},
	} {
		for _, mode := range []string{"v2", "hybrid"} {
			for _, l := range tc.log2 {
				t.Run(fmt.Sprintf("%s/%s/2^%d", tc.name, mode, l), func(t *testing.T) {
					dir := t.TempDir()
					tor, err := CreateTorrent(context.Background(), tc.path, Options{PieceLength: 1 << l, Workers: 3,
						V2: mode == "v2", Hybrid: mode == "hybrid", Trackers: []string{"http://127.0.0.1:1/announce"}})
					if err != nil {
						t.Fatal(err)
					}
					v1, hasV1 := tor.HashV1()
					v2, hasV2 := tor.HashV2()
					if hasV1 != (mode == "hybrid") || !hasV2 {
						t.Fatalf("HashV1 ok %v, HashV2 ok %v for a %s torrent", hasV1, hasV2, mode)
					}
					ours := hex20(v1, hasV1) + " " + hex32(v2, hasV2)

					ltFile := filepath.Join(dir, "lt.torrent")
					if got := runPython(t, libtorrentCreateV2, tc.path, fmt.Sprint(1<<l), mode, ltFile); got != ours {
						t.Errorf("infohashes: ours %s, libtorrent create_torrent %s", ours, got)
					}
					lt, err := LoadTorrent(ltFile)
					if err != nil {
						t.Fatalf("LoadTorrent(libtorrent output): %v", err)
					}
					if !bytes.Equal(lt.Meta.InfoBytes, tor.Meta.InfoBytes) {
						t.Errorf("info dicts differ:\nours %q\nlt   %q", abbrevBytes(tor.Meta.InfoBytes), abbrevBytes(lt.Meta.InfoBytes))
					}
					if !equalLayers(lt.PieceLayers, tor.PieceLayers) {
						t.Errorf("piece layers differ: ours %d, libtorrent %d", len(tor.PieceLayers), len(lt.PieceLayers))
					}
					if m := lt.MissingPieceLayers(); len(m) != 0 {
						t.Errorf("libtorrent's file lacks piece layers for files %v", m)
					}

					// libtorrent reads our file (with its piece layers) back with the same hashes.
					var buf bytes.Buffer
					if err := WriteTorrent(&buf, tor); err != nil {
						t.Fatal(err)
					}
					ourFile := filepath.Join(dir, "ours.torrent")
					if err := os.WriteFile(ourFile, buf.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
					numPieces := tor.V2.NumPieces
					if tor.V1 != nil {
						numPieces = int64(tor.V1.NumPieces())
					}
					if got, want := runPython(t, libtorrentHashes, ourFile), ours+" "+fmt.Sprint(numPieces); got != want {
						t.Errorf("libtorrent reads our file as %s, want %s", got, want)
					}
					back, err := LoadTorrent(ourFile)
					if err != nil {
						t.Fatalf("LoadTorrent(ours): %v", err)
					}
					if !bytes.Equal(back.Meta.InfoBytes, tor.Meta.InfoBytes) || !equalLayers(back.PieceLayers, tor.PieceLayers) {
						t.Errorf("our file does not load back unchanged")
					}
				})
			}
		}
	}
}

func abbrevBytes(b []byte) []byte {
	if len(b) > 600 {
		return b[:600]
	}
	return b
}

func equalLayers(a, b map[[32]byte][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(b[k], v) {
			return false
		}
	}
	return true
}

// The hybrid's v1 half and its v2 half hash the same bytes: every v1 piece of a file is that
// file's data, zero-padded, and each v2 piece hash is the merkle hash of the same piece's data.
func TestCreateHybridPiecesAgree(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"a": 40000, "b/c": 70001, "b/d": 0, "e": 32768 * 3}
	writeTree(t, dir, files)
	const pl = 32 << 10
	tor, err := CreateTorrent(context.Background(), dir, Options{PieceLength: pl, Hybrid: true})
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	for _, f := range tor.V1.Files {
		if isPadFile(f) {
			stream = append(stream, make([]byte, f.Length)...)
			continue
		}
		stream = append(stream, content(strings.Join(f.Path, "/"), int(f.Length))...)
	}
	if got, want := tor.V1.Pieces, referencePieces(stream, pl); !bytes.Equal(got, want) {
		t.Fatalf("v1 pieces differ from SHA-1 of the padded stream")
	}
	for _, f := range tor.V2.Files {
		data := content(strings.Join(f.Path, "/"), int(f.Length))
		b := merkle.NewBuilder(pl)
		b.Write(data)
		root, layer := b.Sum()
		if root != f.PiecesRoot {
			t.Errorf("%s: pieces root %x, want %x", f.Path, f.PiecesRoot, root)
		}
		if got := tor.PieceLayers[f.PiecesRoot]; f.HasPieceLayer(pl) && !bytes.Equal(got, merkle.LayerBytes(layer)) {
			t.Errorf("%s: piece layer differs", f.Path)
		}
	}
}

// PieceV2 maps every piece to its file and expected hash: hashing each piece's bytes with
// merkle.PieceHash matches, in a tree with empty files between others.
func TestPieceV2(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"a": 40000, "b/zero": 0, "b/c": 70001, "d": 100, "e0": 0, "f": 3 * 32768}
	writeTree(t, dir, files)
	const pl = 32 << 10
	tor, err := CreateTorrent(context.Background(), dir, Options{PieceLength: pl, Hybrid: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := int64(tor.V1.NumPieces()); n != tor.V2.NumPieces || n != 2+3+1+3 {
		t.Fatalf("v1 %d pieces, v2 %d, want 9", n, tor.V2.NumPieces)
	}
	var got []string
	for i := range tor.V2.NumPieces {
		p, ok := tor.PieceV2(i)
		if !ok || !p.Known {
			t.Fatalf("piece %d: ok %v known %v", i, ok, p.Known)
		}
		f := tor.V2.Files[p.File]
		data := content(strings.Join(f.Path, "/"), int(f.Length))[p.Offset : p.Offset+p.Length]
		if merkle.PieceHash(data, p.Width) != p.Hash {
			t.Errorf("piece %d (%s at %d): hash mismatch", i, f.Path, p.Offset)
		}
		got = append(got, fmt.Sprintf("%s@%d+%d", strings.Join(f.Path, "/"), p.Offset, p.Length))
	}
	want := "a@0+32768 a@32768+7232 b/c@0+32768 b/c@32768+32768 b/c@65536+4465 d@0+100 f@0+32768 f@32768+32768 f@65536+32768"
	if strings.Join(got, " ") != want {
		t.Errorf("pieces:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if _, ok := tor.PieceV2(tor.V2.NumPieces); ok {
		t.Errorf("piece past the end found")
	}
	// Without the piece layers, multi-piece files' pieces are not known until peers send them.
	tor.PieceLayers = nil
	if p, _ := tor.PieceV2(2); p.Known {
		t.Errorf("piece of b/c known without its layer")
	}
	if p, _ := tor.PieceV2(5); !p.Known {
		t.Errorf("one-piece file d: its root is its piece hash")
	}
}

func TestLoadTorrentRealClientFiles(t *testing.T) {
	for _, tc := range []struct {
		file   string
		v1, v2 string // as libtorrent 2.0.8 reports them
	}{
		{"libtorrent-hybrid.torrent", "85ce4cf6f59746552467ffc1d08ea8cf603d1e5f", "e7316b5b764a6a193768d73be5103fd5c52cd829aefd2930b375903e506b9d77"},
		{"libtorrent-v2only.torrent", strings.Repeat("0", 40), "a6e73dd89a1d0afd85a09414458ba2d39b6861b363d4f53b97c295f3f495ca62"},
		{"libtorrent-v1.torrent", "a2f67c6bb16d1f1da634e71b2ae5910f299d2956", strings.Repeat("0", 64)},
	} {
		tor, err := LoadTorrent(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if got := hex20(tor.HashV1()); got != tc.v1 {
			t.Errorf("%s: v1 %s, want %s", tc.file, got, tc.v1)
		}
		if got := hex32(tor.HashV2()); got != tc.v2 {
			t.Errorf("%s: v2 %s, want %s", tc.file, got, tc.v2)
		}
		if tor.V2 == nil {
			continue
		}
		// tree/a.txt (12 bytes), tree/sub/b.bin (40000 bytes: two pieces, one layer), tree/sub/zero.
		var paths []string
		for _, f := range tor.V2.Files {
			paths = append(paths, fmt.Sprintf("%s:%d", strings.Join(f.Path, "/"), f.Length))
		}
		if got := strings.Join(paths, " "); got != "a.txt:12 sub/b.bin:40000 sub/zero:0" || tor.V2.Single {
			t.Errorf("%s: files %s (single %v)", tc.file, got, tor.V2.Single)
		}
		if len(tor.PieceLayers) != 1 || len(tor.MissingPieceLayers()) != 0 {
			t.Errorf("%s: %d piece layers, missing %v", tc.file, len(tor.PieceLayers), tor.MissingPieceLayers())
		}
		// Assemble gives a .torrent with the info dict byte for byte and the same layers.
		out, err := Assemble(tor.Meta.InfoBytes, tor.PieceLayers, []string{"http://127.0.0.1:1/a"})
		if err != nil {
			t.Fatalf("%s: Assemble: %v", tc.file, err)
		}
		again, err := ParseTorrent(out)
		if err != nil || !bytes.Equal(again.Meta.InfoBytes, tor.Meta.InfoBytes) || !equalLayers(again.PieceLayers, tor.PieceLayers) ||
			again.Meta.Announce != "http://127.0.0.1:1/a" {
			t.Errorf("%s: Assemble output does not parse back the same: %v", tc.file, err)
		}
		if out2, _ := Assemble(tor.Meta.InfoBytes, tor.PieceLayers, []string{"http://127.0.0.1:1/a"}); !bytes.Equal(out, out2) {
			t.Errorf("%s: Assemble is not deterministic", tc.file)
		}
	}
	// Load keeps reading v2-only torrents as unsupported, for callers that need a v1 swarm.
	if _, err := Load(filepath.Join("testdata", "libtorrent-v2only.torrent")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Load(v2-only) = %v, want ErrUnsupported", err)
	}
}

// v2Info is a small valid v2-only info dict: "d/a" of 40000 bytes at 32 KiB pieces (two pieces)
// and the empty "e"; layer is a's piece layer.
func v2Info(t testing.TB) (info map[string]any, layer []byte) {
	data := content("d/a", 40000)
	b := merkle.NewBuilder(32 << 10)
	b.Write(data)
	root, l := b.Sum()
	return map[string]any{
		"meta version": 2,
		"name":         "top",
		"piece length": 32 << 10,
		"file tree": map[string]any{
			"d": map[string]any{"a": map[string]any{"": map[string]any{"length": 40000, "pieces root": string(root[:])}}},
			"e": map[string]any{"": map[string]any{"length": 0}},
		},
	}, merkle.LayerBytes(l)
}

func TestParseTorrentRejectsBadV2(t *testing.T) {
	good, layer := v2Info(t)
	root := good["file tree"].(map[string]any)["d"].(map[string]any)["a"].(map[string]any)[""].(map[string]any)["pieces root"].(string)
	file := func(info map[string]any, layers map[string]any) []byte {
		top := map[string]any{"info": info}
		if layers != nil {
			top["piece layers"] = layers
		}
		return enc(t, top)
	}
	if tor, err := ParseTorrent(file(good, map[string]any{root: string(layer)})); err != nil || len(tor.PieceLayers) != 1 {
		t.Fatalf("the valid v2 torrent: %v", err)
	}
	mod := func(f func(i map[string]any)) map[string]any {
		i, _ := v2Info(t)
		f(i)
		return i
	}
	tree := func(i map[string]any) map[string]any { return i["file tree"].(map[string]any) }
	flipped := []byte(string(layer))
	flipped[5] ^= 1
	for _, tc := range []struct {
		name string
		data []byte
		err  error
		want string
	}{
		{"meta version 3", file(mod(func(i map[string]any) { i["meta version"] = 3 }), nil), ErrUnsupported, "meta version 3"},
		{"piece length not a power of two", file(mod(func(i map[string]any) { i["piece length"] = 48 << 10 }), nil), ErrInvalid, "not a power of two"},
		{"piece length below 16 KiB", file(mod(func(i map[string]any) { i["piece length"] = 8 << 10 }), nil), ErrInvalid, "not a power of two"},
		{"no file tree", file(mod(func(i map[string]any) { delete(i, "file tree") }), nil), ErrInvalid, "no \"file tree\""},
		{"empty tree", file(mod(func(i map[string]any) { i["file tree"] = map[string]any{} }), nil), ErrInvalid, "no files"},
		{"only empty files", file(mod(func(i map[string]any) { delete(tree(i), "d") }), nil), ErrInvalid, "total length is zero"},
		{"dot-dot name", file(mod(func(i map[string]any) { tree(i)[".."] = tree(i)["e"] }), nil), ErrInvalid, `name ".."`},
		{"slash in name", file(mod(func(i map[string]any) { tree(i)["x/y"] = tree(i)["e"] }), nil), ErrInvalid, "contains '/'"},
		{"file and directory", file(mod(func(i map[string]any) {
			tree(i)["f"] = map[string]any{"": map[string]any{"length": 0}, "g": tree(i)["e"]}
		}), nil), ErrInvalid, "both a file and a directory"},
		{"short pieces root", file(mod(func(i map[string]any) {
			tree(i)["d"] = map[string]any{"a": map[string]any{"": map[string]any{"length": 40000, "pieces root": "abc"}}}
		}), nil), ErrInvalid, "32-byte \"pieces root\""},
		{"negative length", file(mod(func(i map[string]any) { tree(i)["e"] = map[string]any{"": map[string]any{"length": -1}} }), nil), ErrInvalid, "out of range"},
		{"not a dict", file(mod(func(i map[string]any) { tree(i)["e"] = "x" }), nil), ErrInvalid, "not a dictionary"},
		{"layer does not match the root", file(good, map[string]any{root: string(flipped)}), ErrInvalid, "does not hash to the file's pieces root"},
		{"layer of the wrong length", file(good, map[string]any{root: string(layer[:32])}), ErrInvalid, "piece layer is 32 bytes"},
		{"layer key not 32 bytes", file(good, map[string]any{"abc": string(layer)}), ErrInvalid, "not a 32-byte pieces root"},
		{"no piece layers (peers supply them)", file(good, nil), nil, ""},
		{"piece layers not a dict", enc(t, map[string]any{"info": good, "piece layers": "x"}), ErrInvalid, "piece layers: not a dictionary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTorrent(tc.data)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseTorrent = %v, want %v containing %q", err, tc.err, tc.want)
			}
		})
	}
	// A piece layer for a root the torrent does not have is dropped, not an error.
	other := strings.Repeat("z", 32)
	tor, err := ParseTorrent(file(good, map[string]any{other: string(layer)}))
	if err != nil || len(tor.PieceLayers) != 0 || len(tor.MissingPieceLayers()) != 1 {
		t.Fatalf("stray layer: %v, %d layers, missing %v", err, len(tor.PieceLayers), tor.MissingPieceLayers())
	}
}

// A hybrid whose halves disagree is refused: a v1 file list in another order, a missing padding
// file (so v1 pieces straddle files), a renamed file, or a v1 single-file layout.
func TestParseTorrentRejectsInconsistentHybrid(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{"a": 40000, "b": 5000})
	tor, err := CreateTorrent(context.Background(), dir, Options{PieceLength: 32 << 10, Hybrid: true})
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := unmarshal(tor.Meta.InfoBytes, &info); err != nil {
		t.Fatal(err)
	}
	files := info["files"].([]any)
	if len(files) != 4 { // libtorrent pads the last file of a hybrid too
		t.Fatalf("want a, pad, b, pad: %v", files)
	}
	recode := func(f func(i map[string]any)) []byte {
		var i map[string]any
		_ = unmarshal(tor.Meta.InfoBytes, &i)
		f(i)
		return enc(t, map[string]any{"info": i})
	}
	pieces := func(n int) string { return strings.Repeat("p", 20*n) }
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"swapped files", recode(func(i map[string]any) {
			fs := i["files"].([]any)
			i["files"] = []any{fs[2], fs[1], fs[0]}
		}), "v1 and v2 halves differ"},
		{"no padding", recode(func(i map[string]any) {
			fs := i["files"].([]any)
			i["files"] = []any{fs[0], fs[2]}
			i["pieces"] = pieces(2)
		}), "not on a piece boundary"},
		{"renamed v1 file", recode(func(i map[string]any) {
			i["files"].([]any)[0].(map[string]any)["path"] = []any{"x"}
		}), "file 0 is"},
		{"padding longer than needed", recode(func(i map[string]any) {
			fs := i["files"].([]any)
			pad := fs[1].(map[string]any)
			pad["length"] = pad["length"].(int64) + 32768
			i["pieces"] = pieces(4)
		}), "padding longer than needed"},
		{"v1 single file", recode(func(i map[string]any) {
			delete(i, "files")
			i["length"] = 40000
			i["pieces"] = pieces(2)
		}), "single file"},
	} {
		if _, err := ParseTorrent(tc.data); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ParseTorrent = %v, want ErrInvalid containing %q", tc.name, err, tc.want)
		}
	}
}

func TestCreateTorrentOptions(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]int{"a": 100})
	if _, err := CreateTorrent(context.Background(), dir, Options{V2: true, Hybrid: true}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("V2 and Hybrid together: %v, want ErrBadOptions", err)
	}
	if _, err := Create(context.Background(), dir, Options{Hybrid: true}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("Create with Hybrid (piece layers would be lost): %v, want ErrBadOptions", err)
	}
	// A v1 torrent from CreateTorrent is the one Create makes.
	mi := mustCreate(t, dir, Options{PieceLength: 16 << 10})
	tor, err := CreateTorrent(context.Background(), dir, Options{PieceLength: 16 << 10})
	if err != nil || !bytes.Equal(tor.Meta.InfoBytes, mi.InfoBytes) || tor.V2 != nil || tor.PieceLayers != nil {
		t.Errorf("CreateTorrent v1 differs from Create: %v", err)
	}
	if h, ok := tor.HashV1(); !ok || h != sha1.Sum(mi.InfoBytes) {
		t.Errorf("HashV1 = %x, %v", h, ok)
	}
}

// A deep directory holding many small files costs a few bytes of input per file but a full path
// each once decoded: refused, with allocation bounded by the input.
func TestParseV2DeepTreeBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("d4:infod9:file tree")
	const depth, files = 200, 3000
	for range depth {
		b.WriteString("d1:a")
	}
	b.WriteString("d")
	for i := range files {
		name := fmt.Sprintf("%05d", i)
		fmt.Fprintf(&b, "%d:%sd0:d6:lengthi0eee", len(name), name)
	}
	b.WriteString("e")
	for range depth {
		b.WriteString("e")
	}
	b.WriteString("12:meta versioni2e4:name1:a12:piece lengthi16384eee")
	data := []byte(b.String())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ParseTorrent(data)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "too deep") {
		t.Errorf("ParseTorrent = %v, want ErrInvalid: paths too deep", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > uint64(48*len(data)) {
		t.Errorf("%d bytes of input allocated %d bytes", len(data), got)
	}
}

// FuzzParseTorrent feeds arbitrary bytes to ParseTorrent (v1, v2 and hybrid): no panic, only this
// package's sentinels, allocation bounded by the input size, and whatever it accepts survives
// WriteTorrent and ParseTorrent unchanged (info dict verbatim, same piece layers).
func FuzzParseTorrent(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.torrent"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	writeTree(f, filepath.Join(dir, "tree"), map[string]int{"a": 40000, "b/c": 1, "b/zero": 0, "d": 70000})
	for _, o := range []Options{{V2: true, PieceLength: 16 << 10}, {Hybrid: true, PieceLength: 32 << 10}} {
		tor, err := CreateTorrent(context.Background(), filepath.Join(dir, "tree"), o)
		if err != nil {
			f.Fatal(err)
		}
		var buf bytes.Buffer
		if err := WriteTorrent(&buf, tor); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	info, layer := v2Info(f)
	f.Add(enc(f, map[string]any{"info": info, "piece layers": map[string]any{strings.Repeat("r", 32): string(layer)}}))
	f.Add([]byte("d4:infod9:file treed1:ad0:d6:lengthi1e11:pieces root32:rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrreee12:meta versioni2e4:name1:a12:piece lengthi16384eee"))

	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tor, err := ParseTorrent(data)
		runtime.ReadMemStats(&after)
		// Decoding copies strings and checks piece layers (a copy of each); per-file and
		// per-directory bookkeeping is bounded by the bytes that describe them.
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(48*len(data)+256<<10); got > limit {
			t.Fatalf("ParseTorrent of %d bytes allocated %d bytes (limit %d)", len(data), got, limit)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if tor.V1 == nil && tor.V2 == nil {
			t.Fatal("accepted a torrent with neither v1 nor v2 info")
		}
		if tor.V2 != nil {
			var sum int64
			for _, fi := range tor.V2.Files {
				for _, c := range fi.Path {
					if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\x00") {
						t.Fatalf("unsafe path component %q accepted", c)
					}
				}
				sum += fi.Length
			}
			if sum != tor.V2.TotalLength || sum <= 0 {
				t.Fatalf("total %d, files sum to %d", tor.V2.TotalLength, sum)
			}
		}
		var buf bytes.Buffer
		if err := WriteTorrent(&buf, tor); err != nil {
			t.Fatalf("WriteTorrent of a parsed torrent: %v", err)
		}
		back, err := ParseTorrent(buf.Bytes())
		if err != nil {
			t.Fatalf("ParseTorrent of our own output: %v", err)
		}
		if !bytes.Equal(back.Meta.InfoBytes, tor.Meta.InfoBytes) || !equalLayers(back.PieceLayers, tor.PieceLayers) {
			t.Fatal("info dict or piece layers changed in a round trip")
		}
	})
}

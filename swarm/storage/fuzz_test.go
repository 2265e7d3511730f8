package storage

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/magnetget/magnetget/internal/alloctest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// FuzzLoadResume feeds whole resume files to the decoder LoadResume uses, and every accepted
// one through the piece-state computation: no panic, an error wrapping ErrDamaged for what is
// refused, and memory bounded by a small multiple of the input.
func FuzzLoadResume(f *testing.F) {
	_, ih, l, _ := infoOf(f, 100, 250, 250)
	good := resumeFile{Version: 2, InfoHash: hex.EncodeToString(ih[:]), PieceLength: l.PieceLength, Pieces: l.NumPieces(),
		Have: make([]byte, (l.NumPieces()+7)/8), Files: make([]fileState, len(l.Files))}
	good.Have[0] = 0xa0
	good.Files[0] = fileState{FileStat{250, 1234}, true}
	b, _ := json.Marshal(good)
	f.Add(b)
	good.Version = 1
	b, _ = json.Marshal(good)
	f.Add(b)
	f.Add([]byte(`{"version":2,"have":"////","files":[{},{},{}]}`))
	f.Add([]byte(`{"version":1e999}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[`))
	f.Add([]byte(``))
	f.Add([]byte(`{"files":[` + strings.Repeat(`{"size":-9223372036854775808},`, 50) + `{}]}`))
	stats := []FileStat{{250, 1234}, {-1, 0}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var rf *resumeFile
		var err error
		n := alloctest.Bytes(func() { rf, err = decodeResume(b, ih, l) })
		if n > 64*uint64(len(b))+64<<10 {
			t.Fatalf("%d bytes allocated decoding %d bytes", n, len(b))
		}
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error not wrapping ErrDamaged: %v", err)
			}
			return
		}
		st := ResumeState{Verified: make([]bool, l.NumPieces()), Known: make([]bool, l.NumPieces())}
		rf.state(l, stats, st)
		for i, v := range st.Verified {
			if v && !st.Known[i] {
				t.Fatalf("piece %d verified but not known", i)
			}
		}
	})
}

// FuzzPathSanitiser builds torrents whose names come from the fuzzer ("..", absolute paths,
// NUL, separators, control characters, very long and Windows-reserved names): every layout
// accepted keeps each file strictly inside the output directory, with clean names.
func FuzzPathSanitiser(f *testing.F) {
	for _, s := range [][3]string{
		{"name", "a/b", "/"}, {"..", "x", "/"}, {"n", "../../etc/passwd", "/"}, {"n", "/abs/x", "/"},
		{"n", "a\x00b", "/"}, {"n", "CON.txt", "/"}, {"n", "com1 .log", "/"}, {"n", "a\\..\\b", "/"},
		{"n", "c:x", "/"}, {"\x1b[31mred", "x", "/"}, {"n", "a\nb", "|"}, {"n", strings.Repeat("x", 300), "/"},
		{"n", "a/./b", "/"}, {"n", "a//b", "/"}, {"n", "lpt\u00b9", "/"}, {"n", "ok/ok", "|"},
	} {
		f.Add(s[0], s[1], s[2][0])
	}
	root := filepath.FromSlash("/out")
	f.Fuzz(func(t *testing.T, name, paths string, sep byte) {
		mi := &metainfo.Info{Name: name, PieceLength: 16}
		for _, p := range strings.Split(paths, "\n") {
			mi.Files = append(mi.Files, metainfo.FileInfo{Length: 1, Path: strings.Split(p, string(sep))})
		}
		mi.Pieces = make([]byte, 20*((len(mi.Files)+15)/16))
		var l *Layout
		var err error
		in := len(name) + len(paths) + 1
		n := alloctest.Bytes(func() { l, err = NewLayout(mi) })
		if n > 256*uint64(in)+64<<10 {
			t.Fatalf("%d bytes allocated for %d bytes of names", n, in)
		}
		if err != nil {
			if !errors.Is(err, ErrUnsafePath) && !errors.Is(err, ErrBadInfo) {
				t.Fatalf("error wraps neither ErrUnsafePath nor ErrBadInfo: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, fl := range l.Files {
			if !filepath.IsLocal(fl.Path) {
				t.Fatalf("%q is not local", fl.Path)
			}
			full := filepath.Join(root, fl.Path)
			if !strings.HasPrefix(full, root+string(filepath.Separator)) {
				t.Fatalf("%q lands at %q", fl.Path, full)
			}
			for _, c := range strings.Split(fl.Path, string(filepath.Separator)) {
				if c == "" || c == "." || c == ".." || len(c) > maxNameLen || strings.ContainsAny(c, "/\\\x00") {
					t.Fatalf("element %q of %q", c, fl.Path)
				}
				if _, err := safeComponent(c); err != nil {
					t.Fatalf("accepted element %q fails the sanitiser: %v", c, err)
				}
			}
			if seen[fl.Path] {
				t.Fatalf("duplicate %q", fl.Path)
			}
			seen[fl.Path] = true
		}
	})
}

// FuzzParseInfo feeds whole info dictionaries (as a peer may send) to ParseInfo: no panic and
// memory bounded by the input (strings are capped at the input's length).
func FuzzParseInfo(f *testing.F) {
	info, _, _, _ := infoOf(f, 100, 250, 250)
	f.Add(info)
	f.Add([]byte("d4:name99999999:xe"))
	f.Add([]byte("d5:filesld6:lengthi1e4:pathl2:..eee4:name1:n12:piece lengthi16e6:pieces20:aaaaaaaaaaaaaaaaaaaae"))
	b, _ := bencode.Marshal(&metainfo.Info{Name: "x", Length: 1 << 40, PieceLength: 1 << 20})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var err error
		n := alloctest.Bytes(func() { _, err = ParseInfo(b) })
		if n > 256*uint64(len(b))+256<<10 {
			t.Fatalf("%d bytes allocated parsing %d bytes", n, len(b))
		}
		if err != nil && !errors.Is(err, ErrBadInfo) && !errors.Is(err, ErrUnsafePath) {
			t.Fatalf("error wraps neither ErrBadInfo nor ErrUnsafePath: %v", err)
		}
	})
}

package torrentfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadRealClientFiles(t *testing.T) {
	for _, tc := range []struct {
		file  string
		hash  string // v1 infohash as libtorrent reports it
		files int    // non-padding files
		err   error
	}{
		{"mktorrent-multi.torrent", "f02715c11abe4712e0169f9a1aa64ace5a7dcb6e", 3, nil},
		{"mktorrent-single.torrent", "c088a7a8cbb81906985f3a1b2cbb2ad3cf8892c1", 1, nil},
		{"libtorrent-v1.torrent", "a2f67c6bb16d1f1da634e71b2ae5910f299d2956", 3, nil},
		{"libtorrent-hybrid.torrent", "85ce4cf6f59746552467ffc1d08ea8cf603d1e5f", 3, nil},
		{"libtorrent-v2only.torrent", "", 0, ErrUnsupported},
	} {
		mi, err := Load(filepath.Join("testdata", tc.file))
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.file, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if got := hexHash(InfoHash(mi)); got != tc.hash {
			t.Errorf("%s: infohash %s, want %s", tc.file, got, tc.hash)
		}
		n := 0
		for _, f := range mustInfo(t, mi).UpvertedFiles() {
			if len(f.Path) == 0 || f.Path[0] != ".pad" {
				n++
			}
		}
		if n != tc.files {
			t.Errorf("%s: %d files, want %d", tc.file, n, tc.files)
		}
	}
}

// FuzzLoad feeds arbitrary bytes to Parse: it must never panic, must fail only with this package's
// sentinels, and whatever it accepts must survive Write and Parse unchanged.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.torrent"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	writeTree(f, filepath.Join(dir, "tree"), map[string]int{"a": 20000, "b/c": 1, "b/zero": 0})
	for _, p := range []string{filepath.Join(dir, "tree"), filepath.Join(dir, "tree", "a")} {
		mi := mustCreate(f, p, Options{Comment: "seed", Trackers: []string{"http://127.0.0.1:1/a", "udp://127.0.0.1:2"},
			WebSeeds: []string{"http://127.0.0.1:3/"}})
		var buf bytes.Buffer
		if err := Write(&buf, mi); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(enc(f, withInfo(func(i map[string]any) { i["files"] = []any{map[string]any{"length": 40000, "path": []any{"..", "x"}}} })))
	f.Add(enc(f, withInfo(func(i map[string]any) { i["pieces"] = strings.Repeat("x", 59) })))
	f.Add([]byte("d4:infod6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee"))
	f.Add([]byte("d1:a" + strings.Repeat("l", 300) + strings.Repeat("e", 300) + "e"))
	f.Add([]byte("d4:info99999999999:x"))

	f.Fuzz(func(t *testing.T, data []byte) {
		mi, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if _, err := FromInfo(mi.InfoBytes, nil); err != nil {
			t.Fatalf("Parse accepted an info dict FromInfo refuses: %v", err)
		}
		var first bytes.Buffer
		if err := Write(&first, mi); err != nil {
			t.Fatalf("Write of a parsed torrent: %v", err)
		}
		back, err := Parse(first.Bytes())
		if err != nil {
			t.Fatalf("Parse of our own Write output: %v\n%q", err, first.Bytes())
		}
		if !bytes.Equal(back.InfoBytes, mi.InfoBytes) {
			t.Fatal("info dict changed in a round trip")
		}
		var second bytes.Buffer
		if err := Write(&second, back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Bytes(), second.Bytes()) {
			t.Fatalf("round trip not stable:\n%q\n%q", first.Bytes(), second.Bytes())
		}
	})
}

// FuzzFromInfo feeds arbitrary bytes as an info dict, as one fetched from a peer would arrive: no
// panic, only sentinel errors, and an accepted dict is kept verbatim and is self-consistent.
func FuzzFromInfo(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.torrent"))
	for _, p := range seeds {
		if mi, err := Load(p); err == nil {
			f.Add([]byte(mi.InfoBytes))
		}
	}
	f.Add(enc(f, validInfo()))
	f.Add([]byte("d6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae"))
	f.Add([]byte("d5:filesld6:lengthi1e4:pathl1:aeed6:lengthi1e4:pathl1:aeee4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mi, err := FromInfo(data, []string{"http://127.0.0.1:1/a"})
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !bytes.Equal(mi.InfoBytes, data) {
			t.Fatal("info bytes not kept verbatim")
		}
		info, err := ParseInfo(mi.InfoBytes)
		if err != nil {
			t.Fatal(err)
		}
		total := info.TotalLength()
		if n := int64(info.NumPieces()); total <= 0 || n*info.PieceLength < total || (n-1)*info.PieceLength >= total {
			t.Fatalf("%d pieces of %d for %d bytes", n, info.PieceLength, total)
		}
		for _, fi := range info.UpvertedFiles() {
			for _, c := range fi.Path {
				if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\x00") {
					t.Fatalf("unsafe path component %q accepted", c)
				}
			}
		}
	})
}

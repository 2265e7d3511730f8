package storage

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// infoOf returns a verbatim info dict with its layout and data.
func infoOf(t testing.TB, pieceLen int64, sizes ...int64) ([]byte, [20]byte, *Layout, []byte) {
	t.Helper()
	mi := &metainfo.Info{Name: "t", PieceLength: pieceLen}
	var total int64
	for i, n := range sizes {
		mi.Files = append(mi.Files, metainfo.FileInfo{Length: n, Path: []string{"d", string(rune('a' + i))}})
		total += n
	}
	data := make([]byte, total)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	for off := int64(0); off < total; off += pieceLen {
		h := sha1.Sum(data[off:min(off+pieceLen, total)])
		mi.Pieces = append(mi.Pieces, h[:]...)
	}
	info, err := bencode.Marshal(mi)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseInfo(info)
	if err != nil {
		t.Fatal(err)
	}
	return info, sha1.Sum(info), l, data
}

// A download keeps its info dict, so a rerun (or `get --seed` offline) needs no metadata.
func TestInfoKeptWithDownload(t *testing.T) {
	info, ih, l, _ := infoOf(t, 100, 250, 250)
	dir := t.TempDir()
	if _, err := LoadInfo(dir, ih); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("nothing kept yet: err %v, want fs.ErrNotExist", err)
	}
	s, err := OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	got, err := LoadInfo(dir, ih)
	if err != nil || !bytes.Equal(got, info) {
		t.Fatalf("LoadInfo: %d bytes, err %v; want the %d bytes kept", len(got), err, len(info))
	}
	// Damaged: an error that is not ErrNotExist, and the next download replaces it.
	if err := os.WriteFile(filepath.Join(dir, InfoName(ih)), info[:len(info)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadInfo(dir, ih); !errors.Is(err, ErrDamaged) {
		t.Fatalf("damaged: err %v, want ErrDamaged", err)
	}
	s, err = OpenOptions(dir, l, Options{InfoHash: ih, Info: info})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got, err := LoadInfo(dir, ih); err != nil || !bytes.Equal(got, info) {
		t.Fatalf("after a rerun: err %v", err)
	}
	// Seeding the user's files keeps nothing in their directory.
	src := t.TempDir()
	if _, err := OpenOptions(src, l, Options{InfoHash: ih, Info: info, ReadOnly: true}); !errors.Is(err, ErrMismatch) {
		t.Fatalf("read-only on an empty dir: %v", err)
	}
	if ents, _ := os.ReadDir(src); len(ents) != 0 {
		t.Fatalf("read-only storage left %v", ents)
	}
}

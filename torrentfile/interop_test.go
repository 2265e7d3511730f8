package torrentfile

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// trickyTree exercises mktorrent's ordering (strcmp on the '/'-joined path: "a-c" < "a.b" < "a/b",
// upper case before lower case), hidden files, zero-length files and nesting.
var trickyTree = map[string]int{
	"a/b":           40000,
	"a-c":           70001,
	"a.b":           1,
	"A/x":           33000,
	".h/y":          20000,
	"Z z":           5000,
	"empty":         0,
	"deep/er/est/f": 100000,
	"deep/er/zero":  0,
	"deep/e":        16384,
}

// libtorrentCreate makes a v1 torrent of path with libtorrent's create_torrent and prints its
// infohash. libtorrent's add_files lists files in directory order, so the script adds them itself
// in mktorrent's order (byte order of the '/'-joined relative path), the one order both tools
// agree on for any tree.
const libtorrentCreate = `
import os, sys, libtorrent as lt
path, pl, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
path = os.path.abspath(path)
parent, name = os.path.dirname(path), os.path.basename(path)
fs = lt.file_storage()
if os.path.isfile(path):
    fs.add_file(name, os.path.getsize(path))
else:
    rels = []
    for d, _, files in os.walk(path):
        for f in files:
            full = os.path.join(d, f)
            rels.append((os.path.relpath(full, path).encode(), os.path.getsize(full)))
    for rel, size in sorted(rels):
        fs.add_file(name + "/" + rel.decode(), size)
ct = lt.create_torrent(fs, pl, flags=lt.create_torrent.v1_only)
lt.set_piece_hashes(ct, parent)
data = lt.bencode(ct.generate())
open(out, "wb").write(data)
print(lt.torrent_info(out).info_hashes().v1)
`

// libtorrentInspect loads a .torrent with libtorrent and prints infohash, file count and paths.
const libtorrentInspect = `
import sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
fs = ti.files()
print(ti.info_hashes().v1)
print(ti.num_pieces(), ti.piece_length(), ti.total_size())
for i in range(fs.num_files()):
    print(fs.file_path(i).replace("\\", "/"), fs.file_size(i))
`

func TestCreateMatchesRealClients(t *testing.T) {
	mktorrent := needTool(t, "mktorrent")
	transmissionShow := needTool(t, "transmission-show")
	needLibtorrent(t)

	base := t.TempDir()
	single := filepath.Join(base, "single.bin")
	writeTree(t, base, map[string]int{"single.bin": 1<<20 + 12345})
	multi := filepath.Join(base, "multi")
	writeTree(t, multi, trickyTree)

	for _, tc := range []struct {
		name string
		path string
		log2 []int
	}{
		{"single", single, []int{15, 18, 21}},
		{"multi", multi, []int{15, 16, 19}},
	} {
		for _, l := range tc.log2 {
			t.Run(fmt.Sprintf("%s/2^%d", tc.name, l), func(t *testing.T) {
				dir := t.TempDir()
				mi := mustCreate(t, tc.path, Options{PieceLength: 1 << l, Workers: 3})
				ours := hexHash(InfoHash(mi))
				ourFile := writeFile(t, dir, "ours.torrent", mi)

				mkFile := filepath.Join(dir, "mk.torrent")
				if out, err := exec.Command(mktorrent, "-l", fmt.Sprint(l), "-d", "-o", mkFile, tc.path).CombinedOutput(); err != nil {
					t.Fatalf("mktorrent: %v\n%s", err, out)
				}
				mk, err := Load(mkFile)
				if err != nil {
					t.Fatalf("Load(mktorrent output): %v", err)
				}
				if got := hexHash(InfoHash(mk)); got != ours {
					t.Errorf("infohash: ours %s, mktorrent %s", ours, got)
				}

				ltFile := filepath.Join(dir, "lt.torrent")
				if got := runPython(t, libtorrentCreate, tc.path, fmt.Sprint(1<<l), ltFile); got != ours {
					t.Errorf("infohash: ours %s, libtorrent create_torrent %s", ours, got)
				}
				lt, err := Load(ltFile)
				if err != nil {
					t.Fatalf("Load(libtorrent output): %v", err)
				}
				if got := hexHash(InfoHash(lt)); got != ours {
					t.Errorf("Load(libtorrent output) infohash %s, want %s", got, ours)
				}

				// libtorrent reads our file back with the same hash, layout and file list.
				info := mustInfo(t, mi)
				lines := strings.Split(runPython(t, libtorrentInspect, ourFile), "\n")
				want := []string{ours, fmt.Sprintf("%d %d %d", info.NumPieces(), info.PieceLength, info.TotalLength())}
				for _, f := range info.UpvertedFiles() {
					want = append(want, strings.Join(append([]string{info.Name}, f.Path...), "/")+" "+fmt.Sprint(f.Length))
				}
				if got := strings.Join(lines, "\n"); got != strings.Join(want, "\n") {
					t.Errorf("libtorrent sees:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
				}

				out, err := exec.Command(transmissionShow, ourFile).CombinedOutput()
				if err != nil {
					t.Fatalf("transmission-show: %v\n%s", err, out)
				}
				if !strings.Contains(string(out), ours) {
					t.Errorf("transmission-show output lacks infohash %s:\n%s", ours, out)
				}
			})
		}
	}
}

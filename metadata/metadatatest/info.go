package metadatatest

import (
	"fmt"
	"math/rand/v2"

	"github.com/anacrolix/torrent/bencode"
)

// fileEntry and infoDict mirror the BEP 3 info dict; the piece hashes are random (deterministic
// per seed), so these dicts are for metadata exchange, not for downloading content.
type fileEntry struct {
	Length int64    `bencode:"length"`
	Path   []string `bencode:"path"`
}

type infoDict struct {
	Files       []fileEntry `bencode:"files,omitempty"`
	Length      int64       `bencode:"length,omitempty"`
	Name        string      `bencode:"name"`
	PieceLength int64       `bencode:"piece length"`
	Pieces      []byte      `bencode:"pieces"`
}

func pieceHashes(r *rand.Rand, total, pieceLen int64) []byte {
	n := (total + pieceLen - 1) / pieceLen
	b := make([]byte, 20*n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// SingleFileInfo returns a bencoded single-file info dict for a file of length bytes.
func SingleFileInfo(seed uint64, name string, length, pieceLen int64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	return bencode.MustMarshal(infoDict{Name: name, Length: length, PieceLength: pieceLen, Pieces: pieceHashes(r, length, pieceLen)})
}

// MultiFileInfo returns a bencoded multi-file info dict with nfiles files of fileLen bytes each,
// in nested directories.
func MultiFileInfo(seed uint64, name string, nfiles int, fileLen, pieceLen int64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	d := infoDict{Name: name, PieceLength: pieceLen}
	for i := range nfiles {
		d.Files = append(d.Files, fileEntry{Length: fileLen, Path: []string{fmt.Sprintf("dir%03d", i%97), fmt.Sprintf("file-%06d-%x.dat", i, r.Uint32())}})
	}
	d.Pieces = pieceHashes(r, int64(nfiles)*fileLen, pieceLen)
	return bencode.MustMarshal(d)
}

// LargeInfo returns a multi-file info dict of about size bytes (10k files, the rest piece hashes).
func LargeInfo(seed uint64, size int) []byte {
	const nfiles = 10000
	const pieceLen = 16 << 10
	// Each file entry costs about 70 bytes; the pieces string fills the rest.
	pieces := max(int64(size-nfiles*70)/20, nfiles)
	return MultiFileInfo(seed, "large", nfiles, pieces*pieceLen/nfiles, pieceLen)
}

package torrentfile

import (
	"context"
	"slices"
	"strconv"

	"github.com/anacrolix/torrent/bencode"

	"github.com/magnetget/magnetget/internal/merkle"
)

// v1FileOut is one element of a hybrid's "files" list; bencode writes the keys in this order.
type v1FileOut struct {
	Attr   string   `bencode:"attr,omitempty"`
	Length int64    `bencode:"length"`
	Path   []string `bencode:"path"`
}

// v2FileOut is a file's entry in a v2 "file tree" (the value of its "" key).
type v2FileOut struct {
	Attr       string `bencode:"attr,omitempty"`
	Length     int64  `bencode:"length"`
	PiecesRoot []byte `bencode:"pieces root,omitempty"`
}

// infoV2Out is a v2 or hybrid info dict as libtorrent's create_torrent writes it.
type infoV2Out struct {
	Attr        string         `bencode:"attr,omitempty"` // single-file hybrid: the file's attr
	FileTree    map[string]any `bencode:"file tree"`
	Files       []v1FileOut    `bencode:"files,omitempty"`
	Length      int64          `bencode:"length,omitempty"`
	MetaVersion int64          `bencode:"meta version"`
	Name        string         `bencode:"name"`
	PieceLength int64          `bencode:"piece length"`
	Pieces      []byte         `bencode:"pieces,omitempty"`
}

// comparePath orders paths component by component (byte order within a component): the order of
// a v2 file tree's keys, and of libtorrent's file_storage::canonicalize.
func comparePath(a, b []string) int {
	return slices.Compare(a, b)
}

// buildV2 hashes files and returns a v2-only or (hybrid) v1+v2 info dict laid out as libtorrent
// lays it out, and the piece layers of files longer than one piece.
func buildV2(ctx context.Context, files []entry, single bool, name string, pieceLength int64, hybrid bool, workers int, progress func(done, total int64)) ([]byte, map[[32]byte][]byte, error) {
	files = slices.Clone(files)
	slices.SortStableFunc(files, func(a, b entry) int { return comparePath(a.path, b.path) })

	// The stream v1 hashes: each file, preceded by a padding file whenever the previous one did
	// not end on a piece boundary (libtorrent pads before every such file, empty ones included,
	// and never after the last). v2 hashes the same pieces minus the padding.
	stream := make([]entry, 0, 2*len(files))
	fileOff := make([]int64, len(files))
	var off int64
	for i, f := range files {
		if r := off % pieceLength; r != 0 {
			pad := pieceLength - r
			stream = append(stream, entry{pad: true, size: pad, path: []string{".pad", strconv.FormatInt(pad, 10)}})
			off += pad
		}
		fileOff[i] = off
		stream = append(stream, f)
		off += f.size
	}
	if r := off % pieceLength; hybrid && len(files) > 1 && r != 0 {
		// libtorrent (2.0.8) pads the last file of a hybrid with several files too.
		pad := pieceLength - r
		stream = append(stream, entry{pad: true, size: pad, path: []string{".pad", strconv.FormatInt(pad, 10)}})
		off += pad
	}
	total := off
	numPieces := (total + pieceLength - 1) / pieceLength
	plan := &v2Pieces{dataLen: make([]int32, numPieces), width: make([]int32, numPieces)}
	for i, f := range files {
		first := fileOff[i] / pieceLength
		w := int32(merkle.PieceWidth(pieceLength, f.size))
		for k := range (f.size + pieceLength - 1) / pieceLength {
			plan.dataLen[first+k] = int32(min(pieceLength, f.size-k*pieceLength))
			plan.width[first+k] = w
		}
	}
	pieces, hashes, err := hashStream(ctx, stream, total, pieceLength, workers, progress, hybrid, plan)
	if err != nil {
		return nil, nil, err
	}

	perPiece := pieceLength / merkle.BlockSize
	tree := make(map[string]any)
	layers := make(map[[32]byte][]byte)
	for i, f := range files {
		props := v2FileOut{Length: f.size}
		if f.exec {
			props.Attr = "x"
		}
		if f.size > 0 {
			first, n := fileOff[i]/pieceLength, (f.size+pieceLength-1)/pieceLength
			hs := hashes[first : first+n]
			root := hs[0]
			if n > 1 {
				root = merkle.Root(hs, merkle.PadHash(perPiece), merkle.NumLeaves(f.size)/perPiece)
				layers[root] = merkle.LayerBytes(hs)
			}
			props.PiecesRoot = root[:]
		}
		path := f.path
		if single {
			path = []string{name}
		}
		dir := tree
		for _, c := range path[:len(path)-1] {
			sub, ok := dir[c].(map[string]any)
			if !ok {
				sub = make(map[string]any)
				dir[c] = sub
			}
			dir = sub
		}
		dir[path[len(path)-1]] = map[string]any{"": props}
	}
	info := infoV2Out{FileTree: tree, MetaVersion: 2, Name: name, PieceLength: pieceLength}
	if hybrid {
		info.Pieces = pieces
		if single {
			info.Length = files[0].size
			if files[0].exec {
				info.Attr = "x"
			}
		} else {
			for _, e := range stream {
				fo := v1FileOut{Length: e.size, Path: e.path}
				switch {
				case e.pad:
					fo.Attr = "p"
				case e.exec:
					fo.Attr = "x"
				}
				info.Files = append(info.Files, fo)
			}
		}
	}
	b, err := bencode.Marshal(info)
	if err != nil {
		return nil, nil, err
	}
	if len(layers) == 0 {
		layers = nil
	}
	return b, layers, nil
}

package torrentfile

import (
	"context"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

const (
	// MinPieceLength and MaxPieceLength bound the piece length Create uses.
	MinPieceLength = 16 << 10
	MaxPieceLength = 16 << 20
	// targetPieces: AutoPieceLength picks the smallest piece length giving at most this many pieces,
	// so an unclamped choice gives 1001..2000 pieces (about 20-40 KB of hashes).
	targetPieces = 2000
)

// AutoPieceLength returns the piece length Create uses for total bytes: the smallest power of two
// giving at most 2000 pieces (so 1001-2000 pieces), clamped to MinPieceLength..MaxPieceLength.
func AutoPieceLength(total int64) int64 {
	pl := int64(MinPieceLength)
	for pl < MaxPieceLength && (total+pl-1)/pl > targetPieces {
		pl <<= 1
	}
	return pl
}

// entry is one file to share: its path inside the torrent and where to read it.
type entry struct {
	path   []string // components inside the torrent, nil for a single-file torrent
	osPath string
	size   int64
	exec   bool // executable by its owner: BEP 47 attr "x" in v2 and hybrid torrents, as libtorrent sets it
	pad    bool // BEP 47 padding: size zero bytes, no file
}

// Create builds a v1 torrent of the file or directory at path. The info dict (and so the infohash)
// depends only on the tree's content, file names, Options.Name and the piece length; see the package
// comment for which files are included and in what order. A directory always gives a multi-file
// torrent, even with one file inside, as mktorrent does. v2 and hybrid torrents carry piece layers
// outside the info dict, which a MetaInfo cannot hold: for those (Options.V2, Options.Hybrid) use
// CreateTorrent and WriteTorrent.
func Create(ctx context.Context, path string, o Options) (*metainfo.MetaInfo, error) {
	if o.V2 || o.Hybrid {
		return nil, fmt.Errorf("create torrent: %w: v2 and hybrid torrents need CreateTorrent and WriteTorrent (their piece layers live outside the info dict)", ErrBadOptions)
	}
	t, err := CreateTorrent(ctx, path, o)
	if err != nil {
		return nil, err
	}
	return t.Meta, nil
}

// CreateTorrent builds a torrent of the file or directory at path: v1 as Create describes, or, with
// Options.V2 or Options.Hybrid, a v2-only or hybrid (v1+v2) torrent whose info dict is the one
// libtorrent's create_torrent makes for the same tree and piece length (files ordered by path
// component by component, BEP 47 padding before every file that would not start a piece, attr "x"
// on executable files), so both agree on both infohashes.
func CreateTorrent(ctx context.Context, path string, o Options) (*Torrent, error) {
	if o.V2 && o.Hybrid {
		return nil, fmt.Errorf("create torrent: %w: V2 (v2-only) and Hybrid (v1+v2) exclude each other", ErrBadOptions)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("create torrent: %w", err)
	}
	name := o.Name
	if name == "" {
		name = filepath.Base(abs)
	}
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("create torrent: %w: torrent name: %v", ErrBadOptions, err)
	}
	if o.PieceLength != 0 && (o.PieceLength < MinPieceLength || o.PieceLength > MaxPieceLength ||
		bits.OnesCount64(uint64(o.PieceLength)) != 1) {
		return nil, fmt.Errorf("create torrent: %w: piece length %d is not a power of two in %d..%d",
			ErrBadOptions, o.PieceLength, MinPieceLength, MaxPieceLength)
	}
	// The tree is what path resolves to; symlinks inside it are judged against the resolved root.
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("create torrent: %w", err)
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("create torrent: %w", err)
	}
	var files []entry
	switch {
	case st.Mode().IsRegular():
		files = []entry{{osPath: root, size: st.Size(), exec: st.Mode()&0o100 != 0}}
	case st.IsDir():
		if files, err = walk(ctx, root); err != nil {
			return nil, fmt.Errorf("create torrent: %w", err)
		}
	default:
		return nil, fmt.Errorf("create torrent: %w: %s is neither a regular file nor a directory", ErrEmpty, path)
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	if total == 0 {
		return nil, fmt.Errorf("create torrent: %w: %s holds no data (only empty files or none)", ErrEmpty, path)
	}
	pieceLength := o.PieceLength
	if pieceLength == 0 {
		pieceLength = AutoPieceLength(total)
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		infoBytes []byte
		layers    map[[32]byte][]byte
	)
	if o.V2 || o.Hybrid {
		infoBytes, layers, err = buildV2(ctx, files, !st.IsDir(), name, pieceLength, o.Hybrid, workers, o.Progress)
	} else {
		infoBytes, err = buildV1(ctx, files, !st.IsDir(), name, pieceLength, workers, o.Progress)
	}
	if err != nil {
		return nil, fmt.Errorf("create torrent: %w", err)
	}
	mi := &metainfo.MetaInfo{
		InfoBytes:    infoBytes,
		CreatedBy:    CreatedBy,
		CreationDate: time.Now().Unix(),
		Comment:      o.Comment,
	}
	setTrackers(mi, o.Trackers)
	for _, ws := range o.WebSeeds {
		if ws != "" {
			mi.UrlList = append(mi.UrlList, ws)
		}
	}
	t := &Torrent{Meta: mi, PieceLayers: layers}
	// Read back what was built: the same checks as for any loaded torrent.
	if t.V1, t.V2, err = parseAnyInfo(infoBytes); err != nil {
		return nil, fmt.Errorf("create torrent: built an invalid info dict: %w", err)
	}
	return t, nil
}

// buildV1 hashes files and returns a v1 info dict (mktorrent's layout).
func buildV1(ctx context.Context, files []entry, single bool, name string, pieceLength int64, workers int, progress func(done, total int64)) ([]byte, error) {
	var total int64
	for _, f := range files {
		total += f.size
	}
	info := metainfo.Info{Name: name, PieceLength: pieceLength}
	if !single {
		for _, f := range files {
			info.Files = append(info.Files, metainfo.FileInfo{Path: f.path, Length: f.size})
		}
	} else {
		info.Length = total
	}
	var err error
	if info.Pieces, err = hashPieces(ctx, files, total, info.PieceLength, workers, progress); err != nil {
		return nil, err
	}
	return bencode.Marshal(info)
}

// walk lists the files to share under the directory root (already free of symlinks), ordered as
// mktorrent orders them: by the '/'-joined path inside the tree, compared byte by byte.
func walk(ctx context.Context, root string) ([]entry, error) {
	var files []entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err // an unreadable directory would silently drop data: fail instead
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p == root || d.IsDir() {
			return nil // WalkDir does not follow symlinked directories, so this cannot loop
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		var size int64
		var exec bool
		switch mode := d.Type(); {
		case mode.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size, exec = fi.Size(), fi.Mode()&0o100 != 0
		case mode&fs.ModeSymlink != 0:
			target, ok, err := symlinkTarget(root, p)
			if err != nil || !ok {
				return err
			}
			p, size, exec = target.path, target.size, target.exec
		default:
			return nil // fifo, socket, device: no data to share
		}
		files = append(files, entry{
			path:   strings.Split(filepath.ToSlash(rel), "/"),
			osPath: p,
			size:   size,
			exec:   exec,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool {
		return strings.Join(files[i].path, "/") < strings.Join(files[j].path, "/")
	})
	return files, nil
}

// symlinkTarget resolves the symlink at p. It reports ok only for a link that ends at a regular
// file inside root; dangling links, links to directories and links leaving the tree are skipped.
func symlinkTarget(root, p string) (t struct {
	path string
	size int64
	exec bool
}, ok bool, err error) {
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return t, false, nil // dangling or looping link
	}
	rel, err := filepath.Rel(root, resolved)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return t, false, nil
	}
	fi, err := os.Stat(resolved)
	if err != nil || !fi.Mode().IsRegular() {
		return t, false, nil
	}
	t.path, t.size, t.exec = resolved, fi.Size(), fi.Mode()&0o100 != 0
	return t, true, nil
}

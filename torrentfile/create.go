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
}

// Create builds a v1 torrent of the file or directory at path. The info dict (and so the infohash)
// depends only on the tree's content, file names, Options.Name and the piece length; see the package
// comment for which files are included and in what order. A directory always gives a multi-file
// torrent, even with one file inside, as mktorrent does.
func Create(ctx context.Context, path string, o Options) (*metainfo.MetaInfo, error) {
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
		files = []entry{{osPath: root, size: st.Size()}}
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
	info := metainfo.Info{Name: name, PieceLength: o.PieceLength}
	if info.PieceLength == 0 {
		info.PieceLength = AutoPieceLength(total)
	}
	if st.IsDir() {
		for _, f := range files {
			info.Files = append(info.Files, metainfo.FileInfo{Path: f.path, Length: f.size})
		}
	} else {
		info.Length = total
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if info.Pieces, err = hashPieces(ctx, files, total, info.PieceLength, workers, o.Progress); err != nil {
		return nil, fmt.Errorf("create torrent: %w", err)
	}
	infoBytes, err := bencode.Marshal(info)
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
	return mi, nil
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
		switch mode := d.Type(); {
		case mode.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size = fi.Size()
		case mode&fs.ModeSymlink != 0:
			target, ok, err := symlinkTarget(root, p)
			if err != nil || !ok {
				return err
			}
			p, size = target.path, target.size
		default:
			return nil // fifo, socket, device: no data to share
		}
		files = append(files, entry{
			path:   strings.Split(filepath.ToSlash(rel), "/"),
			osPath: p,
			size:   size,
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
	t.path, t.size = resolved, fi.Size()
	return t, true, nil
}

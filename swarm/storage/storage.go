package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrClosed is returned by I/O on a closed Storage.
var ErrClosed = errors.New("storage closed")

// maxOpen bounds open file handles, so torrents with many files stay under the fd limit.
const maxOpen = 128

// Storage reads and writes the torrent's byte stream in place under Dir. It is safe for
// concurrent use; ReadAt and WriteAt on distinct ranges run in parallel.
type Storage struct {
	dir    string
	layout *Layout

	mu       sync.Mutex // guards the following
	open     map[int]*handle
	closed   bool
	prealloc func(file int) bool
}

type handle struct {
	f     *os.File
	users int
	dirty bool // written since the last Sync
}

// Open prepares storage of layout under dir. Nothing is created until written, except by
// CreateEmpty. dir itself must exist or be creatable.
func Open(dir string, layout *Layout) (*Storage, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("storage: output directory: %w", err)
	}
	for _, f := range layout.Files {
		// Defence in depth: layout already sanitised every element.
		p := filepath.Join(abs, f.Path)
		if rel, err := filepath.Rel(abs, p); err != nil || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("%w: %q escapes %s", ErrUnsafePath, f.Path, abs)
		}
	}
	return &Storage{dir: abs, layout: layout, open: make(map[int]*handle)}, nil
}

// Layout returns the layout the storage was opened with.
func (s *Storage) Layout() *Layout { return s.layout }

// FilePath returns the absolute path of file i.
func (s *Storage) FilePath(i int) string { return filepath.Join(s.dir, s.layout.Files[i].Path) }

// CreateEmpty creates the zero-length files among those for which sel returns true (nil: all);
// nothing else would ever create them.
func (s *Storage) CreateEmpty(sel func(int) bool) error {
	for i, f := range s.layout.Files {
		if f.Length != 0 || f.Pad || (sel != nil && !sel(i)) {
			continue
		}
		h, err := s.acquire(i, true)
		if err != nil {
			return err
		}
		s.release(h)
	}
	return nil
}

// Preallocate makes WriteAt reserve disk space for the whole of each file chosen by sel when
// it first creates it (nil: none, the default). The file's size is not changed, so a partial
// file still looks partial; the win is that filesystems such as ext4 then allocate the file's
// blocks once instead of block by block as writes arrive, which costs the writer a good part
// of its CPU time. Only files that will be downloaded in full should be chosen: a file touched
// only by a piece at its edge would otherwise reserve its whole length for nothing.
func (s *Storage) Preallocate(sel func(file int) bool) {
	s.mu.Lock()
	s.prealloc = sel
	s.mu.Unlock()
}

// acquire returns an open handle for file i, opening (and with create, creating) it.
func (s *Storage) acquire(i int, create bool) (*handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if h := s.open[i]; h != nil {
		h.users++
		return h, nil
	}
	path := s.FilePath(i)
	flag := os.O_RDWR
	if create {
		if err := s.mkdirs(filepath.Dir(path)); err != nil {
			return nil, err
		}
		flag |= os.O_CREATE
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if err := s.checkInside(path); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil && !create && errors.Is(err, os.ErrPermission) {
		f, err = os.Open(path) // a read-only file can still be seeded
	}
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if len(s.open) >= maxOpen {
		s.evictLocked()
	}
	if create && s.prealloc != nil && s.prealloc(i) {
		if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
			preallocate(f, s.layout.Files[i].Length)
		}
	}
	h := &handle{f: f, users: 1}
	s.open[i] = h
	return h, nil
}

// mkdirs creates dir under s.dir one element at a time, refusing to pass through a symlink
// that leads outside s.dir (checked before anything is created beyond it).
func (s *Storage) mkdirs(dir string) error {
	rel, err := filepath.Rel(s.dir, dir)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return fmt.Errorf("%w: %s is outside %s", ErrUnsafePath, dir, s.dir)
	}
	if rel == "." {
		return nil
	}
	cur := s.dir
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("storage: %w", err)
			}
			continue
		case err != nil:
			return fmt.Errorf("storage: %w", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			if err := s.checkInside(cur); err != nil {
				return err
			}
		case !fi.IsDir():
			return fmt.Errorf("storage: %s exists and is not a directory", cur)
		}
	}
	return nil
}

// checkInside reports an error unless path resolves (through symlinks) inside s.dir.
func (s *Storage) checkInside(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	root, err := filepath.EvalSymlinks(s.dir)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if rel, err := filepath.Rel(root, real); err != nil || !filepath.IsLocal(rel) && rel != "." {
		return fmt.Errorf("%w: %s leads outside %s through a symlink", ErrUnsafePath, path, s.dir)
	}
	return nil
}

// evictLocked closes one idle handle (syncing it first if written).
func (s *Storage) evictLocked() {
	for i, h := range s.open {
		if h.users == 0 {
			if h.dirty {
				_ = h.f.Sync()
			}
			_ = h.f.Close()
			delete(s.open, i)
			return
		}
	}
}

func (s *Storage) release(h *handle) {
	s.mu.Lock()
	h.users--
	s.mu.Unlock()
}

// span calls fn for each file piece of the stream range [off, off+n).
func (s *Storage) span(off int64, n int, fn func(file int, fileOff int64, lo, hi int) error) error {
	if off < 0 || off+int64(n) > s.layout.Total {
		return fmt.Errorf("storage: range %d+%d outside torrent of %d bytes", off, n, s.layout.Total)
	}
	pos := 0
	for i := s.layout.fileAt(off); pos < n && i < len(s.layout.Files); i++ {
		f := s.layout.Files[i]
		cur := off + int64(pos)
		if f.Length == 0 || cur >= f.Offset+f.Length {
			continue
		}
		k := int(min(int64(n-pos), f.Offset+f.Length-cur))
		if err := fn(i, cur-f.Offset, pos, pos+k); err != nil {
			return err
		}
		pos += k
	}
	return nil
}

// WriteAt writes p at stream offset off, creating files and directories as needed.
func (s *Storage) WriteAt(p []byte, off int64) error {
	return s.span(off, len(p), func(i int, fo int64, lo, hi int) error {
		if s.layout.Files[i].Pad {
			return nil
		}
		h, err := s.acquire(i, true)
		if err != nil {
			return err
		}
		defer s.release(h)
		if _, err := h.f.WriteAt(p[lo:hi], fo); err != nil {
			return fmt.Errorf("storage: write %s: %w", s.layout.Files[i].Path, err)
		}
		s.mu.Lock()
		h.dirty = true
		s.mu.Unlock()
		return nil
	})
}

// ReadAt fills p from stream offset off. A missing or short file gives an error wrapping
// io.ErrUnexpectedEOF or fs.ErrNotExist.
func (s *Storage) ReadAt(p []byte, off int64) error {
	return s.span(off, len(p), func(i int, fo int64, lo, hi int) error {
		if s.layout.Files[i].Pad {
			clear(p[lo:hi])
			return nil
		}
		h, err := s.acquire(i, false)
		if err != nil {
			return err
		}
		defer s.release(h)
		if _, err := h.f.ReadAt(p[lo:hi], fo); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("storage: read %s: %w", s.layout.Files[i].Path, err)
		}
		return nil
	})
}

// Sync flushes every file written since the last Sync to disk.
func (s *Storage) Sync() error {
	s.mu.Lock()
	var hs []*handle
	for _, h := range s.open {
		if h.dirty {
			h.users++
			h.dirty = false
			hs = append(hs, h)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, h := range hs {
		if err := h.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("storage: sync: %w", err))
		}
		s.release(h)
	}
	return errors.Join(errs...)
}

// Close syncs and closes every open file. Later I/O fails with ErrClosed.
func (s *Storage) Close() error {
	err := s.Sync()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for i, h := range s.open {
		if err := h.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage: close: %w", err))
		}
		delete(s.open, i)
	}
	return errors.Join(append([]error{err}, errs...)...)
}

// TrimFiles truncates files chosen by sel (nil: all) that are longer than the torrent says,
// e.g. left over from an older version, so a complete download is byte-identical.
func (s *Storage) TrimFiles(sel func(int) bool) error {
	for i, f := range s.layout.Files {
		if f.Pad || sel != nil && !sel(i) {
			continue
		}
		if st := s.Stat(i); st.Size > f.Length {
			if err := os.Truncate(s.FilePath(i), f.Length); err != nil {
				return fmt.Errorf("storage: %w", err)
			}
		}
	}
	return nil
}

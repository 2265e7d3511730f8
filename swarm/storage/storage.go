package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Errors callers branch on. Each error returned wraps one of them and reads as one line that
// names the file or directory and what to do.
var (
	// ErrClosed is returned by I/O on a closed Storage.
	ErrClosed = errors.New("storage closed")
	// ErrBusy: another process (another magnetget) holds the lock on this download's state.
	ErrBusy = errors.New("download in use by another process")
	// ErrExists: a file in the way was not written by this download and does not match the
	// torrent; it is overwritten only with Options.Force.
	ErrExists = errors.New("file in the way")
	// ErrMismatch: read-only storage (seeding) found the user's files missing, of other sizes
	// or with other content than the torrent says.
	ErrMismatch = errors.New("content does not match the torrent")
	// ErrReadOnly is returned by writes to read-only storage.
	ErrReadOnly = errors.New("storage is read-only")
)

// userError is an error whose text is complete for a user and which matches a sentinel.
type userError struct {
	msg  string
	kind error
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.kind }

// maxOpen bounds open file handles, so torrents with many files stay under the fd limit.
const maxOpen = 128

// Options are how Open treats the output directory. The zero value downloads into it.
type Options struct {
	// InfoHash names the resume state, the kept info dictionary and the lock in the directory.
	InfoHash [20]byte
	// Info, when set, is the verbatim info dictionary, kept beside the resume state (unless
	// already there) so that LoadInfo can give it back to a rerun or to `get --seed` offline.
	Info []byte
	// ReadOnly is for seeding the user's own files: they are opened read-only and never
	// created, truncated or written; no state file or lock is put into the directory. Open
	// fails with ErrMismatch unless every file exists with the torrent's size.
	ReadOnly bool
	// Force lets a download overwrite files that are in its way although they are not its own
	// (see ErrExists).
	Force bool
}

// Storage reads and writes the torrent's byte stream in place under Dir. It is safe for
// concurrent use; ReadAt and WriteAt on distinct ranges run in parallel.
//
// Every content file is opened beneath the output directory's descriptor without following
// any symlink (see tree), and truncated or preallocated through its descriptor, never by path.
// A download holds an exclusive lock on its state for as long as it is open (ErrBusy), and
// writes only files it owns: files it creates, files its resume state claims, and files that
// were there before whose content verifies as the torrent's (adopted on the first piece
// HashPiece verifies); anything else is ErrExists unless Options.Force.
type Storage struct {
	dir    string
	layout *Layout
	opts   Options
	tree   *tree    // downloads: no symlink is followed below dir
	root   *os.Root // ReadOnly: the user's own tree, read beneath dir (inner symlinks followed)
	unlock func()   // releases the lock; nil for ReadOnly

	mu       sync.Mutex // guards the following
	open     map[int]*handle
	closed   bool
	prealloc func(file int) bool
	ours     []bool        // files this download may write
	wb       chan *os.File // files whose writeback to start (writeback); nil until the first
	wbDone   chan struct{} // closed when the writeback goroutine has ended
}

type handle struct {
	f       *os.File
	users   int
	dirty   bool  // written since the last Sync
	unflush int64 // bytes written since writeback was last started
}

// writebackEvery is how many bytes written to a file start its writeback (startWriteback).
const writebackEvery = 8 << 20

// Open prepares storage of layout under dir with zero Options.
func Open(dir string, layout *Layout) (*Storage, error) { return OpenOptions(dir, layout, Options{}) }

// OpenOptions prepares storage of layout under dir. For a download (not ReadOnly) dir is
// created if missing, the lock is taken (ErrBusy when another process holds it), temporary
// files left by an interrupted save are removed, the files about to be created are claimed in
// the resume state before any of them exists, and the info dictionary is kept. Content files
// are created only when written, or by CreateEmpty.
func OpenOptions(dir string, layout *Layout, o Options) (*Storage, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	for _, f := range layout.Files {
		// Defence in depth: layout already sanitised every element.
		p := filepath.Join(abs, f.Path)
		if rel, err := filepath.Rel(abs, p); err != nil || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("%w: %q escapes %s", ErrUnsafePath, f.Path, abs)
		}
	}
	s := &Storage{dir: abs, layout: layout, opts: o, open: make(map[int]*handle), ours: make([]bool, len(layout.Files))}
	if o.ReadOnly {
		if s.root, err = os.OpenRoot(abs); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		if err := s.checkContent(); err != nil {
			s.root.Close()
			return nil, err
		}
		return s, nil
	}
	if s.tree, err = openTree(abs, true); err != nil {
		return nil, fmt.Errorf("storage: output directory: %w", err)
	}
	unlock, busy, err := s.tree.lock(LockName(o.InfoHash))
	if err == nil && busy {
		err = &userError{fmt.Sprintf("another magnetget is downloading %s into %s", printable(layout.Name), abs), ErrBusy}
	}
	if err != nil {
		s.tree.close()
		return nil, err
	}
	s.unlock = unlock
	s.tree.removeTemps(ResumeName(o.InfoHash))
	s.tree.removeTemps(InfoName(o.InfoHash))
	if err := s.claim(); err != nil {
		s.Close()
		return nil, err
	}
	if o.Info != nil && !hasInfo(abs, o.InfoHash) {
		if err := s.tree.writeAtomic(InfoName(o.InfoHash), o.Info); err != nil {
			s.Close()
			return nil, fmt.Errorf("storage: keeping the info dictionary: %w", err)
		}
	}
	return s, nil
}

// LockName returns the name of the lock file a download of ih holds in its output directory.
func LockName(ih [20]byte) string { return ResumeName(ih) + ".lock" }

// checkContent (ReadOnly) requires every file to exist with the torrent's size: seeding from
// the wrong directory, or files changed since the torrent was made, must not pass for a seed.
func (s *Storage) checkContent() error {
	missing := 0
	var first error
	for _, f := range s.layout.Files {
		if f.Pad {
			continue
		}
		p := filepath.Join(s.dir, f.Path)
		fi, err := s.root.Stat(f.Path)
		switch {
		case err != nil && errors.Is(err, fs.ErrNotExist):
			missing++
			if first == nil {
				first = &userError{fmt.Sprintf("%s: missing: wrong directory?", printable(p)), ErrMismatch}
			}
		case err != nil:
			return &userError{fmt.Sprintf("%s: %v", printable(p), errors.Unwrap(err)), ErrMismatch}
		case !fi.Mode().IsRegular():
			return &userError{fmt.Sprintf("%s is not a regular file", printable(p)), ErrMismatch}
		case fi.Size() != f.Length:
			return &userError{fmt.Sprintf("%s: %d bytes, the torrent says %d: wrong directory?", printable(p), fi.Size(), f.Length), ErrMismatch}
		}
	}
	if missing > 1 && missing == len(s.layout.Files) {
		return &userError{fmt.Sprintf("none of the torrent's %d files is in %s: wrong directory?", missing, printable(s.dir)), ErrMismatch}
	}
	return first
}

// Layout returns the layout the storage was opened with.
func (s *Storage) Layout() *Layout { return s.layout }

// FilePath returns the absolute path of file i.
func (s *Storage) FilePath(i int) string { return filepath.Join(s.dir, s.layout.Files[i].Path) }

// mayWrite reports whether file i may be changed, as an error naming it when not.
func (s *Storage) mayWrite(i int) error {
	if s.opts.ReadOnly {
		return &userError{fmt.Sprintf("%s: not written: seeding never changes the files it seeds", printable(s.FilePath(i))), ErrReadOnly}
	}
	s.mu.Lock()
	ok := s.ours[i]
	s.mu.Unlock()
	if !ok {
		return s.existsError(i)
	}
	return nil
}

func (s *Storage) existsError(i int) error {
	return &userError{fmt.Sprintf("%s already exists and does not match the torrent: move it away, or use --force to overwrite it", printable(s.FilePath(i))), ErrExists}
}

// CreateEmpty creates the zero-length files among those for which sel returns true (nil: all);
// nothing else would ever create them. A non-empty file of that name that is not ours is
// ErrExists (it would be truncated once complete); ReadOnly storage checked them at Open.
func (s *Storage) CreateEmpty(sel func(int) bool) error {
	if s.opts.ReadOnly {
		return nil
	}
	for i, f := range s.layout.Files {
		if f.Length != 0 || f.Pad || (sel != nil && !sel(i)) {
			continue
		}
		if err := s.mayWrite(i); err != nil {
			if st := s.Stat(i); st.Size != 0 {
				return err
			}
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

// openFile opens file i: read-only from the user's tree, or beneath the output directory
// without following symlinks (creating it and its directories with create).
func (s *Storage) openFile(i int, create bool) (*os.File, error) {
	rel := s.layout.Files[i].Path
	if s.opts.ReadOnly {
		f, err := s.root.OpenFile(rel, os.O_RDONLY|oNonblock, 0)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("storage: %s is not a regular file", printable(s.FilePath(i)))
		}
		return f, nil
	}
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
	}
	f, err := s.tree.openFile(rel, flag, create)
	if err != nil && !create && errors.Is(err, fs.ErrPermission) {
		f, err = s.tree.openFile(rel, os.O_RDONLY, false) // a read-only file can still be seeded
	}
	return f, err
}

// acquire returns an open handle for file i, opening (and with create, creating) it. The
// open, and any preallocation, run outside the lock.
func (s *Storage) acquire(i int, create bool) (*handle, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if h := s.open[i]; h != nil {
		h.users++
		s.mu.Unlock()
		return h, nil
	}
	prealloc := create && s.prealloc != nil && s.prealloc(i)
	s.mu.Unlock()

	f, err := s.openFile(i, create)
	if err != nil {
		return nil, err
	}
	if prealloc {
		if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
			preallocate(f, s.layout.Files[i].Length)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		f.Close()
		return nil, ErrClosed
	}
	if h := s.open[i]; h != nil { // opened meanwhile by another caller
		f.Close()
		h.users++
		return h, nil
	}
	if len(s.open) >= maxOpen {
		s.evictLocked()
	}
	h := &handle{f: f, users: 1}
	s.open[i] = h
	return h, nil
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

// WriteAt writes p at stream offset off, creating files and directories as needed. Only files
// this download owns are written (ErrExists, ErrReadOnly otherwise).
func (s *Storage) WriteAt(p []byte, off int64) error {
	return s.span(off, len(p), func(i int, fo int64, lo, hi int) error {
		if s.layout.Files[i].Pad {
			return nil
		}
		if err := s.mayWrite(i); err != nil {
			return err
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
		if h.unflush += int64(hi - lo); h.unflush >= writebackEvery {
			h.unflush = 0
			s.kickWritebackLocked(h.f)
		}
		s.mu.Unlock()
		return nil
	})
}

// kickWritebackLocked has the writeback goroutine start f's writeback. It runs apart from the
// writers because sync_file_range may wait for the disk's queue (in line, writing 256 MiB took
// 240 ms instead of 153); a kick that finds the goroutine busy is dropped, the next one comes
// writebackEvery bytes later and the final Sync writes whatever is left.
func (s *Storage) kickWritebackLocked(f *os.File) {
	if s.closed {
		return
	}
	if s.wb == nil {
		s.wb, s.wbDone = make(chan *os.File, 4), make(chan struct{})
		go func(wb <-chan *os.File, done chan<- struct{}) {
			defer close(done)
			for f := range wb {
				startWriteback(f) // a file closed meanwhile gives ErrClosed, ignored
			}
		}(s.wb, s.wbDone)
	}
	select {
	case s.wb <- f:
	default:
	}
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

// Close syncs and closes every open file and releases the lock. Later I/O fails with
// ErrClosed. Close may be called more than once.
func (s *Storage) Close() error {
	err := s.Sync()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	wbDone := s.wbDone
	if s.wb != nil {
		close(s.wb)
	}
	var errs []error
	for i, h := range s.open {
		if err := h.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage: close: %w", err))
		}
		delete(s.open, i)
	}
	s.mu.Unlock()
	if wbDone != nil {
		// A writeback started on a file closed above fails with ErrClosed (os.File keeps the
		// descriptor until the call returns), so waiting out of the lock is enough.
		<-wbDone
	}
	if s.unlock != nil {
		s.unlock()
	}
	if s.tree != nil {
		_ = s.tree.close()
	}
	if s.root != nil {
		_ = s.root.Close()
	}
	return errors.Join(append([]error{err}, errs...)...)
}

// TrimFiles truncates files chosen by sel (nil: all) that are longer than the torrent says,
// e.g. left over from an older version, so a complete download is byte-identical. Only files
// of ours are trimmed, through their descriptors; ReadOnly storage trims nothing (its sizes
// were checked at Open).
func (s *Storage) TrimFiles(sel func(int) bool) error {
	if s.opts.ReadOnly {
		return nil
	}
	for i, f := range s.layout.Files {
		if f.Pad || sel != nil && !sel(i) {
			continue
		}
		if st := s.Stat(i); st.Size > f.Length {
			if err := s.mayWrite(i); err != nil {
				return err
			}
			h, err := s.acquire(i, false)
			if err != nil {
				return err
			}
			err = h.f.Truncate(f.Length)
			s.release(h)
			if err != nil {
				return fmt.Errorf("storage: %w", err)
			}
		}
	}
	return nil
}

// CheckMissing is called once the pieces on disk are known, with the wanted pieces still
// missing, before anything is fetched. A download fails early with ErrExists when one of them
// would be written into a file in the way; ReadOnly storage, which cannot fetch, fails with
// ErrMismatch naming the first file whose content differs from the torrent.
func (s *Storage) CheckMissing(missing []int) error {
	if len(missing) == 0 {
		return nil
	}
	if s.opts.ReadOnly {
		per := make(map[int]int)
		first := -1
		for _, p := range missing {
			a, b := s.layout.PieceFiles(p)
			for f := a; f <= b; f++ {
				if s.layout.Files[f].Length > 0 && !s.layout.Files[f].Pad {
					if first < 0 {
						first = f
					}
					per[f]++
				}
			}
		}
		if first < 0 {
			first = 0
		}
		return &userError{fmt.Sprintf("%s: %d of its pieces differ from the torrent (%d in all): changed since the torrent was made?",
			printable(s.FilePath(first)), per[first], len(missing)), ErrMismatch}
	}
	for _, p := range missing {
		a, b := s.layout.PieceFiles(p)
		for f := a; f <= b; f++ {
			if s.layout.Files[f].Length == 0 || s.layout.Files[f].Pad {
				continue
			}
			s.mu.Lock()
			ok := s.ours[f]
			s.mu.Unlock()
			if !ok && s.Stat(f).Size >= 0 {
				return s.existsError(f)
			}
		}
	}
	return nil
}

// adopt records that piece i verified on disk: the files it overlaps hold the torrent's bytes,
// so they are ours to complete even if we did not create them.
func (s *Storage) adopt(i int) {
	a, b := s.layout.PieceFiles(i)
	s.mu.Lock()
	for f := a; f <= b; f++ {
		if s.layout.Files[f].Length > 0 {
			s.ours[f] = true
		}
	}
	s.mu.Unlock()
}

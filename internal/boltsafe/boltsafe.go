// Package boltsafe opens bbolt files that may be damaged without letting the damage crash the
// process.
//
// bbolt reads its file through a memory map and trusts what it finds there: a page id past the end
// of a truncated file is a SIGBUS ("fatal error: fault", not recoverable by default), a key offset
// that points outside its page reads arbitrary memory, a branch page that points to itself
// recurses until the stack limit (fatal too), and inconsistent meta data makes commit panic. The
// defence has three layers:
//
//  1. Check, before bbolt maps anything, reads the file with plain file I/O: the size (a whole
//     number of pages, at least four), both meta pages (magic, version, checksum, page size,
//     high-water mark within the file, root and freelist below it), then walks every page
//     reachable from the meta bbolt will use, iteratively and visiting each page once: ids below
//     the high-water mark, page types where they belong, element counts and key/value offsets
//     inside their page, nested and inline buckets, freelist entries. A damaged file is reported
//     before bbolt touches it.
//  2. Guard runs a function with runtime/debug.SetPanicOnFault, so that a fault the check missed
//     becomes a panic, and recovers every panic into an error wrapping ErrCorrupt.
//  3. Callers move a damaged file aside with MoveAside (never deleting it) and start afresh.
//
// Open combines 1 and 2. Check only reads; when it finds damage without holding a lock, it checks
// again under an exclusive file lock, so a commit in progress in another process is never taken
// for damage.
package boltsafe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrCorrupt is wrapped by every error about a damaged (or non-bbolt) file.
var ErrCorrupt = errors.New("database file is damaged")

// ErrLocked: another process held the file's lock longer than the Options' Timeout.
var ErrLocked = errors.New("database file is locked by another process")

// bbolt's on-disk constants (go.etcd.io/bbolt/internal/common), fixed by its file format.
const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2

	pageHeaderSize = 16 // id uint64, flags uint16, count uint16, overflow uint32
	elementSize    = 16 // branch: pos, ksize uint32, pgid uint64; leaf: flags, pos, ksize, vsize uint32
	metaSize       = 64 // magic, version, pageSize, flags uint32; root, sequence, freelist, pgid, txid, checksum uint64
	inBucketSize   = 16 // root pgid, sequence

	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	freelistPage = 0x10
	bucketLeaf   = 0x01

	noFreelist = ^uint64(0)

	minPageSize = 1 << 10
	maxPageSize = 1 << 24 // what bbolt itself probes for
	// maxInlineDepth bounds inline buckets nested in inline buckets (bbolt never writes one).
	maxInlineDepth = 16
)

// bbolt lays its structures out in the machine's byte order.
var ne = binary.NativeEndian

type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64 // pages in use: every page id is below it
	txid     uint64
}

// Open checks the file at path (Check), then opens it with bbolt (mode 0600) under Guard. A missing
// or empty file is created or initialised by bbolt as usual. Errors about the content wrap ErrCorrupt;
// opts.Timeout exceeded waiting for another process's lock gives ErrLocked.
func Open(path string, opts *bolt.Options) (*bolt.DB, error) {
	var timeout time.Duration
	if opts != nil {
		timeout = opts.Timeout
	}
	if err := checkLocked(path, timeout); err != nil {
		return nil, err
	}
	var db *bolt.DB
	err := Guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, opts)
		return err
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	case errors.Is(err, ErrCorrupt), errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: %w", path, err)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrVersionMismatch), errors.Is(err, bolt.ErrChecksum):
		return nil, fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
	default:
		return nil, fmt.Errorf("%s: %w", path, err)
	}
}

// Guard runs fn with faults turned into panics (runtime/debug.SetPanicOnFault) and any panic
// recovered into an error wrapping ErrCorrupt. Wrap every bbolt call that reads or writes the
// mapped file (View, Update, Close after a failed write). SetPanicOnFault applies to the calling
// goroutine only: fn must not hand bbolt work to other goroutines.
func Guard(fn func() error) (err error) {
	// The fault setting belongs to this goroutine; pin it to its thread while it is on.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return fn()
}

// MoveAside renames a damaged file to path.corrupt-<UTC time> beside it and returns the new path.
// Nothing is ever deleted: the user may want the file.
func MoveAside(path string) (string, error) {
	aside := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	return aside, nil
}

// checkLocked runs Check; when it finds damage, it checks again holding an exclusive lock, so that
// a file another process is committing to is not mistaken for a damaged one.
func checkLocked(path string, timeout time.Duration) error {
	err := Check(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // bbolt creates it, or reports it missing when read-only
	}
	if !errors.Is(err, ErrCorrupt) {
		return err
	}
	f, ferr := os.Open(path)
	if ferr != nil {
		return err
	}
	defer f.Close()
	if lerr := lockExclusive(f, timeout); lerr != nil {
		return lerr
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return Check(path)
}

func lockExclusive(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%s: lock: %w", f.Name(), err)
		}
		if timeout > 0 && time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", f.Name(), ErrLocked)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Check reads the bbolt file at path with plain file I/O and reports damage that would make bbolt
// fault, panic or loop, as an error wrapping ErrCorrupt. A missing file gives an fs.ErrNotExist
// error; an empty one (bbolt initialises it) is fine. It reads every page in use once and holds
// at most one page (with its overflow) in memory, plus one bit per page.
func Check(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w: not a regular file", path, ErrCorrupt)
	}
	if fi.Size() == 0 {
		return nil
	}
	if err := check(f, fi.Size()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func check(r io.ReaderAt, size int64) error {
	m, err := chooseMeta(r, size)
	if err != nil {
		return err
	}
	c := &checker{r: r, psz: int64(m.pageSize), hwm: m.hwm, seen: make([]uint64, (m.hwm+63)/64)}
	c.mark(0)
	c.mark(1)
	if m.freelist != noFreelist {
		if err := c.freelist(m.freelist); err != nil {
			return err
		}
	}
	return c.tree(m.root)
}

// readMeta decodes the meta page at off. ok is false when it is not a valid meta page.
func readMeta(r io.ReaderAt, off int64) (m meta, ok bool) {
	var b [pageHeaderSize + metaSize]byte
	if n, _ := r.ReadAt(b[:], off); n != len(b) {
		return m, false
	}
	mb := b[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(mb[:metaSize-8])
	if ne.Uint16(b[8:]) != metaPage || ne.Uint32(mb[0:]) != boltMagic || ne.Uint32(mb[4:]) != boltVersion || ne.Uint64(mb[56:]) != h.Sum64() {
		return m, false
	}
	return meta{pageSize: ne.Uint32(mb[8:]), root: ne.Uint64(mb[16:]), freelist: ne.Uint64(mb[32:]), hwm: ne.Uint64(mb[40:]), txid: ne.Uint64(mb[48:])}, true
}

// chooseMeta finds the page size as bbolt does (meta 0, else meta 1 at each possible page size),
// checks the file's size against it, and returns the valid meta with the highest txid (the one
// bbolt uses), after checking its fields against the file.
func chooseMeta(r io.ReaderAt, size int64) (meta, error) {
	m0, ok0 := readMeta(r, 0)
	psz := int64(0)
	if ok0 {
		psz = int64(m0.pageSize)
	} else {
		for i := 0; i <= 14 && psz == 0; i++ {
			if m, ok := readMeta(r, 1024<<i); ok && int64(m.pageSize) == 1024<<i {
				psz = 1024 << i
			}
		}
	}
	if psz == 0 {
		return meta{}, corrupt("no valid meta page (not a bbolt file, or both meta pages damaged)")
	}
	if psz < minPageSize || psz > maxPageSize || psz&(psz-1) != 0 {
		return meta{}, corrupt("page size %d", psz)
	}
	if size%psz != 0 || size < 4*psz {
		return meta{}, corrupt("size %d is not a whole number of %d-byte pages, at least 4 (truncated?)", size, psz)
	}
	m1, ok1 := readMeta(r, psz)
	var cands []meta
	for _, c := range []struct {
		m  meta
		ok bool
	}{{m0, ok0}, {m1, ok1}} {
		if c.ok && int64(c.m.pageSize) == psz {
			cands = append(cands, c.m)
		}
	}
	if len(cands) == 0 {
		return meta{}, corrupt("no valid meta page")
	}
	m := cands[0]
	if len(cands) == 2 && cands[1].txid > m.txid {
		m = cands[1]
	}
	pages := uint64(size / psz)
	switch {
	case m.hwm < 4 || m.hwm > pages:
		return m, corrupt("meta says %d pages in use, the file holds %d (truncated?)", m.hwm, pages)
	case m.root < 2 || m.root >= m.hwm:
		return m, corrupt("root page %d outside 2..%d", m.root, m.hwm-1)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.hwm):
		return m, corrupt("freelist page %d outside 2..%d", m.freelist, m.hwm-1)
	}
	return m, nil
}

type checker struct {
	r    io.ReaderAt
	psz  int64
	hwm  uint64
	seen []uint64 // one bit per page id below hwm
	buf  []byte
}

func (c *checker) mark(id uint64) bool {
	w, bit := id/64, uint64(1)<<(id%64)
	was := c.seen[w]&bit != 0
	c.seen[w] |= bit
	return was
}

// page reads page id with its overflow pages, after checking that they are all in use and not
// reached before (a cycle, or two parents), and that the header names the page.
func (c *checker) page(id uint64, wantFlags ...uint16) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, corrupt("page id %d outside 2..%d", id, c.hwm-1)
	}
	// One read for the page; a second only when it has overflow pages.
	if int64(cap(c.buf)) < c.psz {
		c.buf = make([]byte, c.psz)
	}
	h := c.buf[:c.psz]
	if _, err := c.r.ReadAt(h, int64(id)*c.psz); err != nil {
		return nil, corrupt("page %d: %v", id, err)
	}
	overflow := uint64(ne.Uint32(h[12:]))
	if ne.Uint64(h[0:]) != id {
		return nil, corrupt("page %d names itself %d", id, ne.Uint64(h[0:]))
	}
	if overflow >= c.hwm-id {
		return nil, corrupt("page %d: %d overflow pages run past page %d", id, overflow, c.hwm-1)
	}
	flags := ne.Uint16(h[8:])
	okFlags := false
	for _, f := range wantFlags {
		okFlags = okFlags || flags == f
	}
	if !okFlags {
		return nil, corrupt("page %d: unexpected type %#x", id, flags)
	}
	for i := id; i <= id+overflow; i++ {
		if c.mark(i) {
			return nil, corrupt("page %d reached twice", i)
		}
	}
	if overflow == 0 {
		return h, nil
	}
	n := int64(overflow+1) * c.psz
	b := make([]byte, n)
	if _, err := c.r.ReadAt(b, int64(id)*c.psz); err != nil {
		return nil, corrupt("page %d: %v", id, err)
	}
	return b, nil
}

func (c *checker) freelist(id uint64) error {
	p, err := c.page(id, freelistPage)
	if err != nil {
		return err
	}
	start, count := pageHeaderSize, uint64(ne.Uint16(p[10:]))
	if count == 0xFFFF {
		if len(p) < pageHeaderSize+8 {
			return corrupt("freelist page %d too short", id)
		}
		count, start = ne.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if count > uint64(len(p)-start)/8 {
		return corrupt("freelist page %d: %d ids do not fit", id, count)
	}
	for i := range count {
		if fid := ne.Uint64(p[start+int(i)*8:]); fid < 2 || fid >= c.hwm {
			return corrupt("freelist page %d: free page id %d outside 2..%d", id, fid, c.hwm-1)
		}
	}
	return nil
}

// tree walks the pages of every bucket reachable from the root bucket's page, without recursion:
// pending holds page ids still to visit.
func (c *checker) tree(root uint64) error {
	pending := []uint64{root}
	for len(pending) > 0 {
		id := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		p, err := c.page(id, branchPage, leafPage)
		if err != nil {
			return err
		}
		if pending, err = c.elements(p, id, pending, 0); err != nil {
			return err
		}
	}
	return nil
}

// elements checks the elements of one branch or leaf page p (a whole page, or an inline bucket's
// page inside a value) and appends the child pages to visit to pending.
func (c *checker) elements(p []byte, id uint64, pending []uint64, inlineDepth int) ([]uint64, error) {
	if len(p) < pageHeaderSize {
		return pending, corrupt("page %d: too short", id)
	}
	flags, count := ne.Uint16(p[8:]), int(ne.Uint16(p[10:]))
	if flags != branchPage && flags != leafPage {
		return pending, corrupt("page %d: unexpected type %#x", id, flags)
	}
	if pageHeaderSize+count*elementSize > len(p) {
		return pending, corrupt("page %d: %d elements do not fit", id, count)
	}
	if flags == branchPage && count == 0 {
		return pending, corrupt("branch page %d without elements", id)
	}
	for i := range count {
		at := pageHeaderSize + i*elementSize
		e := p[at : at+elementSize]
		if flags == branchPage {
			pos, ksize := uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
			if uint64(at)+pos+ksize > uint64(len(p)) {
				return pending, corrupt("page %d: key %d outside the page", id, i)
			}
			pending = append(pending, ne.Uint64(e[8:]))
			continue
		}
		eflags := ne.Uint32(e[0:])
		pos, ksize, vsize := uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		kAt := uint64(at) + pos
		if kAt+ksize+vsize > uint64(len(p)) {
			return pending, corrupt("page %d: key/value %d outside the page", id, i)
		}
		if eflags&bucketLeaf == 0 {
			continue
		}
		v := p[kAt+ksize : kAt+ksize+vsize]
		if len(v) < inBucketSize {
			return pending, corrupt("page %d: bucket %d: value of %d bytes", id, i, len(v))
		}
		if sub := ne.Uint64(v); sub != 0 {
			pending = append(pending, sub)
			continue
		}
		// An inline bucket: its page follows the bucket header inside the value.
		if inlineDepth >= maxInlineDepth {
			return pending, corrupt("page %d: inline buckets nested too deep", id)
		}
		inline := v[inBucketSize:]
		if len(inline) < pageHeaderSize || ne.Uint16(inline[8:]) != leafPage {
			return pending, corrupt("page %d: bucket %d: bad inline page", id, i)
		}
		var err error
		if pending, err = c.elements(inline, id, pending, inlineDepth+1); err != nil {
			return pending, err
		}
	}
	return pending, nil
}

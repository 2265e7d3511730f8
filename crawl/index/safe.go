package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
)

// bbolt maps the whole file and trusts it: a meta page that names more
// pages than the file holds (a truncated file) makes the first read past
// the end a SIGBUS, which no recover catches ("fatal error: fault"), and a
// damaged branch page makes it panic. So the file is checked before bbolt
// sees it (checkFile), and every read runs under guard, which turns a
// memory fault into a panic (debug.SetPanicOnFault) and the panic into an
// error wrapping ErrCorrupt.

// bbolt's on-disk constants (go.etcd.io/bbolt/internal/common), format 2.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16 // id u64, flags u16, count u16, overflow u32
	boltMetaLen    = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	boltMetaFlag   = 0x04
	boltNoFreelist = ^uint64(0)
)

type boltMeta struct {
	ok                        bool
	pageSize                  uint32
	root, freelist, pgid, txd uint64
}

// readMeta decodes the meta page at off (little-endian: bbolt writes its
// structs in host order, and every platform Go supports for this program
// is little-endian).
func readMeta(b []byte, off int) boltMeta {
	if off < 0 || off+boltPageHeader+boltMetaLen > len(b) {
		return boltMeta{}
	}
	p := b[off:]
	if binary.LittleEndian.Uint16(p[8:])&boltMetaFlag == 0 {
		return boltMeta{}
	}
	m := p[boltPageHeader : boltPageHeader+boltMetaLen]
	h := fnv.New64a()
	h.Write(m[:56])
	if binary.LittleEndian.Uint32(m[0:]) != boltMagic || binary.LittleEndian.Uint32(m[4:]) != boltVersion || binary.LittleEndian.Uint64(m[56:]) != h.Sum64() {
		return boltMeta{}
	}
	return boltMeta{
		ok:       true,
		pageSize: binary.LittleEndian.Uint32(m[8:]),
		root:     binary.LittleEndian.Uint64(m[16:]),
		freelist: binary.LittleEndian.Uint64(m[32:]),
		pgid:     binary.LittleEndian.Uint64(m[40:]),
		txd:      binary.LittleEndian.Uint64(m[48:]),
	}
}

// checkFile looks at a bbolt file's meta pages before bbolt maps it and
// reports why bbolt must not open it: no valid meta page, or the meta bbolt
// would use (the valid one with the highest transaction id) naming pages
// past the end of the file. A missing or empty file is fine (bbolt
// creates one).
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	head := make([]byte, min(size, 64<<10))
	if _, err := io.ReadFull(f, head); err != nil {
		return fmt.Errorf("reading its header: %w", err)
	}
	m0 := readMeta(head, 0)
	ps := 4096
	if m0.ok && validPageSize(m0.pageSize) {
		ps = int(m0.pageSize)
	}
	m1 := readMeta(head, ps)
	use := m0
	if !m0.ok || (m1.ok && m1.txd > m0.txd) {
		use = m1
	}
	if !use.ok {
		return fmt.Errorf("%d bytes with no valid bbolt meta page", size)
	}
	if !validPageSize(use.pageSize) {
		return fmt.Errorf("page size %d", use.pageSize)
	}
	pages := uint64(size) / uint64(use.pageSize)
	switch {
	case use.pgid < 2 || use.pgid > pages:
		return fmt.Errorf("truncated: its meta page names %d pages of %d bytes, the file holds %d bytes", use.pgid, use.pageSize, size)
	case use.root >= use.pgid:
		return fmt.Errorf("root page %d beyond the %d pages in use", use.root, use.pgid)
	case use.freelist != boltNoFreelist && use.freelist >= use.pgid:
		return fmt.Errorf("freelist page %d beyond the %d pages in use", use.freelist, use.pgid)
	}
	// The pages bbolt reads while opening must say what they are.
	if use.freelist != boltNoFreelist {
		if err := checkPage(f, use.freelist, use.pageSize, boltFreelistFlag); err != nil {
			return fmt.Errorf("freelist: %w", err)
		}
	}
	if err := checkPage(f, use.root, use.pageSize, boltBranchFlag|boltLeafFlag); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	return nil
}

const (
	boltBranchFlag   = 0x01
	boltLeafFlag     = 0x02
	boltFreelistFlag = 0x10
)

// checkPage reads page id's header and checks its id and type.
func checkPage(f *os.File, id uint64, pageSize uint32, flags uint16) error {
	var h [boltPageHeader]byte
	if _, err := f.ReadAt(h[:], int64(id)*int64(pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(h[0:]); got != id {
		return fmt.Errorf("page %d calls itself %d", id, got)
	}
	if binary.LittleEndian.Uint16(h[8:])&flags == 0 {
		return fmt.Errorf("page %d has type %#x", id, binary.LittleEndian.Uint16(h[8:]))
	}
	return nil
}

func validPageSize(ps uint32) bool { return ps >= 512 && ps <= 1<<20 && ps&(ps-1) == 0 }

// guard runs fn, turning a memory fault or a panic inside it (bbolt on a
// damaged page) into an error wrapping ErrCorrupt. It is the last line of
// defence, after checkFile.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading it failed: %v", ErrCorrupt, r)
		}
	}()
	return fn()
}

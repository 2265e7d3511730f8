//go:build !unix

package storage

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tree is the output directory. Without the *at system calls this is best effort: os.Root
// keeps every path beneath the directory, and each element is checked not to be a symlink
// before use (a race with a process swapping one in remains possible here, not on unix).
type tree struct {
	path      string
	root      *os.Root
	noOpenat2 bool
}

func openTree(path string, create bool) (*tree, error) {
	if create {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, err
		}
	}
	r, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	return &tree{path: path, root: r}, nil
}

func (t *tree) close() error { return t.root.Close() }

func splitRel(rel string) ([]string, error) {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.IndexByte(p, 0) >= 0 {
			return nil, fmt.Errorf("%w: %q", ErrUnsafePath, rel)
		}
	}
	return parts, nil
}

func (t *tree) noLinks(parts []string, mkdirs bool) error {
	for i := range parts {
		p := filepath.Join(parts[:i+1]...)
		fi, err := t.root.Lstat(p)
		if err != nil {
			if os.IsNotExist(err) && mkdirs && i < len(parts)-1 {
				if err := t.root.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
					return err
				}
				continue
			}
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %s: a symlink in the way (nothing in the output directory is written through a symlink)", ErrUnsafePath, filepath.Join(t.path, p))
		}
	}
	return nil
}

func (t *tree) openFile(rel string, flag int, mkdirs bool) (*os.File, error) {
	parts, err := splitRel(rel)
	if err != nil {
		return nil, err
	}
	if err := t.noLinks(parts, mkdirs); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	f, err := t.root.OpenFile(filepath.Join(parts...), flag, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("storage: %s exists and is not a regular file", filepath.Join(t.path, rel))
	}
	return f, nil
}

func (t *tree) lstat(rel string) (size, mtime int64, ok bool) {
	parts, err := splitRel(rel)
	if err != nil || t.noLinks(parts, false) != nil {
		return 0, 0, false
	}
	fi, err := t.root.Lstat(rel)
	if err != nil || !fi.Mode().IsRegular() {
		return 0, 0, false
	}
	return fi.Size(), fi.ModTime().UnixNano(), true
}

func (t *tree) writeAtomic(name string, data []byte) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := name + ".tmp" + hex.EncodeToString(rnd[:])
	f, err := t.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = t.root.Rename(tmp, name)
	}
	if err != nil {
		_ = t.root.Remove(tmp)
	}
	return err
}

func (t *tree) removeTemps(name string) {
	ents, err := os.ReadDir(t.path)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+".tmp") && e.Type().IsRegular() {
			_ = t.root.Remove(e.Name())
		}
	}
}

// lock: an O_EXCL lock file. A crash leaves it behind; the error then says which file to remove.
func (t *tree) lock(name string) (unlock func(), busy bool, err error) {
	f, err := t.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if os.IsExist(err) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	f.Close()
	return func() { _ = t.root.Remove(name) }, false, nil
}

const oNonblock = 0

//go:build unix

package storage

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// tree is the output directory, opened once. Every content file is resolved beneath its
// descriptor, one element at a time or by openat2, and never through a symlink: a symlink
// planted inside the output directory (before the run or during it) cannot make us write
// outside it, and nothing is ever done by path name below the directory itself.
type tree struct {
	path string
	dir  *os.File        // the output directory, O_RDONLY|O_DIRECTORY
	rc   syscall.RawConn // of dir: Control keeps the descriptor alive while a call uses it

	noOpenat2 bool // tests: use the per-element walk even where openat2 exists
}

func openTree(path string, create bool) (*tree, error) {
	if create {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, err
		}
	}
	// The output directory itself is what the user named, so a symlink there is theirs to
	// follow; below it nothing is followed.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	dir := os.NewFile(uintptr(fd), path)
	rc, err := dir.SyscallConn()
	if err != nil {
		dir.Close()
		return nil, err
	}
	return &tree{path: path, dir: dir, rc: rc}, nil
}

func (t *tree) close() error { return t.dir.Close() }

// at runs fn with the directory's descriptor, which stays open (and is not reused) meanwhile.
func (t *tree) at(fn func(dirfd int) error) error {
	var err error
	if cerr := t.rc.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
		return ErrClosed
	}
	return err
}

// splitRel splits a relative path into its elements, refusing anything that is not a plain
// name (the layout sanitised every name already: this is a second line).
func splitRel(rel string) ([]string, error) {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.IndexByte(p, 0) >= 0 {
			return nil, fmt.Errorf("%w: %q", ErrUnsafePath, rel)
		}
	}
	return parts, nil
}

// openFile opens rel beneath the directory with flag (O_RDWR, O_RDONLY, O_CREAT...). With
// mkdirs, missing parent directories are created (mkdirat beneath the directory). Any symlink
// on the way, including rel itself, is refused with an error wrapping ErrUnsafePath, and
// anything but a regular file with one saying so.
func (t *tree) openFile(rel string, flag int, mkdirs bool) (*os.File, error) {
	parts, err := splitRel(rel)
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK: opening a FIFO someone left in our place must not hang us.
	flag |= unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	var fd int
	err = t.at(func(root int) error {
		var err error
		fd, err = openBeneath(root, parts, flag, mkdirs, t.noOpenat2)
		return err
	})
	if err != nil {
		return nil, t.pathErr("open", rel, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, t.pathErr("stat", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("storage: %s exists and is not a regular file", filepath.Join(t.path, rel))
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, t.pathErr("open", rel, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(t.path, rel)), nil
}

// pathErr turns a resolution error into a message naming the path; a symlink in the way
// wraps ErrUnsafePath.
func (t *tree) pathErr(op, rel string, err error) error {
	p := filepath.Join(t.path, rel)
	switch {
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnsafePath):
		return err
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EMLINK), errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%w: %s: a symlink in the way (nothing in the output directory is written through a symlink)", ErrUnsafePath, p)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("storage: %s: a file is in the way of a directory", p)
	}
	return fmt.Errorf("storage: %w", &os.PathError{Op: op, Path: p, Err: err})
}

// lstat returns the size and mtime of rel if it is a regular file reached without any symlink.
func (t *tree) lstat(rel string) (size, mtime int64, ok bool) {
	parts, err := splitRel(rel)
	if err != nil {
		return 0, 0, false
	}
	var st unix.Stat_t
	err = t.at(func(root int) error {
		dfd, err := openDirs(root, parts[:len(parts)-1], false, t.noOpenat2)
		if err != nil {
			return err
		}
		if dfd != root {
			defer unix.Close(dfd)
		}
		return unix.Fstatat(dfd, parts[len(parts)-1], &st, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, 0, false
	}
	return st.Size, st.Mtim.Nano(), true
}

// openDirs opens the directory parts beneath root without following symlinks, creating
// missing ones with mkdirs. It returns root itself for no parts (do not close it then).
func openDirs(root int, parts []string, mkdirs, noOpenat2 bool) (int, error) {
	if len(parts) == 0 {
		return root, nil
	}
	if !noOpenat2 {
		fd, err := openat2(root, strings.Join(parts, "/"), oPath|unix.O_DIRECTORY|unix.O_CLOEXEC)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, errNoOpenat2) && !(mkdirs && errors.Is(err, unix.ENOENT)) {
			return -1, err
		}
	}
	cur := root
	for _, p := range parts {
		fd, err := unix.Openat(cur, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && mkdirs {
			if err = unix.Mkdirat(cur, p, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				fd, err = unix.Openat(cur, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		if errors.Is(err, unix.ENOTDIR) {
			// O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR on Linux: name the symlink.
			var st unix.Stat_t
			if unix.Fstatat(cur, p, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		if cur != root {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// openBeneath opens the file parts beneath root with flag (which holds O_NOFOLLOW).
func openBeneath(root int, parts []string, flag int, mkdirs, noOpenat2 bool) (int, error) {
	if !noOpenat2 {
		fd, err := openat2(root, strings.Join(parts, "/"), flag)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, errNoOpenat2) && !(mkdirs && errors.Is(err, unix.ENOENT)) {
			return -1, err
		}
	}
	dfd, err := openDirs(root, parts[:len(parts)-1], mkdirs, noOpenat2)
	if err != nil {
		return -1, err
	}
	if dfd != root {
		defer unix.Close(dfd)
	}
	return unix.Openat(dfd, parts[len(parts)-1], flag, 0o644)
}

// writeAtomic replaces the file name (directly in the directory) with data: a temporary file
// beside it, fsync, rename, then fsync of the directory so the rename survives a crash too.
func (t *tree) writeAtomic(name string, data []byte) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := name + ".tmp" + hex.EncodeToString(rnd[:])
	return t.at(func(root int) error {
		fd, err := unix.Openat(root, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return &os.PathError{Op: "create", Path: filepath.Join(t.path, tmp), Err: err}
		}
		f := os.NewFile(uintptr(fd), tmp)
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			if err = unix.Renameat(root, tmp, root, name); err != nil {
				err = &os.PathError{Op: "rename", Path: filepath.Join(t.path, name), Err: err}
			}
		}
		if err != nil {
			_ = unix.Unlinkat(root, tmp, 0)
			return err
		}
		// Without this the rename may not survive a power cut. Some filesystems cannot sync a
		// directory (EINVAL): the rename is then as durable as they make it.
		if err := unix.Fsync(root); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTSUP) {
			return &os.PathError{Op: "fsync", Path: t.path, Err: err}
		}
		return nil
	})
}

// removeTemps removes the temporary files writeAtomic leaves behind name when interrupted.
// Callers hold the lock, so no save of ours is in progress.
func (t *tree) removeTemps(name string) {
	ents, err := os.ReadDir(t.path)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), name+".tmp") && e.Type().IsRegular() {
			_ = t.at(func(root int) error { return unix.Unlinkat(root, e.Name(), 0) })
		}
	}
}

// lock takes an exclusive, non-blocking flock on the file name in the directory. busy is true
// when another process holds it. unlock removes the file (while still holding the lock) and
// releases it.
func (t *tree) lock(name string) (unlock func(), busy bool, err error) {
	for range 8 {
		var fd int
		err = t.at(func(root int) error {
			var err error
			fd, err = unix.Openat(root, name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			return err
		})
		if err != nil {
			return nil, false, t.pathErr("open", name, err)
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, true, nil
			}
			if errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) {
				// A filesystem without locks (some network mounts): downloading there
				// unprotected beats not downloading there at all.
				return func() {}, false, nil
			}
			return nil, false, t.pathErr("lock", name, err)
		}
		// The holder before us removes the file as it lets go: make sure we locked the file
		// that is still there, not one just unlinked.
		var a, b unix.Stat_t
		serr := unix.Fstat(fd, &a)
		if serr == nil {
			serr = t.at(func(root int) error { return unix.Fstatat(root, name, &b, unix.AT_SYMLINK_NOFOLLOW) })
		}
		if serr == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return func() {
				_ = t.at(func(root int) error { return unix.Unlinkat(root, name, 0) })
				unix.Close(fd)
			}, false, nil
		}
		unix.Close(fd)
	}
	return nil, false, fmt.Errorf("storage: %s keeps being replaced", filepath.Join(t.path, name))
}

const oNonblock = unix.O_NONBLOCK

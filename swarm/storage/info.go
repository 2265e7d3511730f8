package storage

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// MaxInfoSize bounds the info dictionary kept beside the resume state (and read back by
// LoadInfo): far above any real torrent's (a 10,000-file torrent's is about 1 MiB).
const MaxInfoSize = 64 << 20

// ErrDamaged is wrapped by errors about a state file of ours (info, resume) that is unreadable
// or does not match its torrent. Callers warn and go on as if it were absent.
var ErrDamaged = errors.New("damaged state file")

// InfoName returns the name of the file that keeps a torrent's verbatim info dictionary in the
// output directory, beside its resume file, so that a rerun needs no metadata from peers.
func InfoName(ih [20]byte) string { return "." + hex.EncodeToString(ih[:]) + ".magnetget-info" }

// LoadInfo returns the verbatim info dictionary a download of ih into dir kept (see
// Options.Info). It hashes to ih. None kept: an error wrapping fs.ErrNotExist; a file that is
// damaged, too large or not for ih (a v1 infohash or a v2 one truncated to 20 bytes): an error wrapping ErrDamaged (callers fetch the metadata
// again, and the next download replaces the file).
func LoadInfo(dir string, ih [20]byte) ([]byte, error) {
	path := filepath.Join(dir, InfoName(ih))
	f, err := openStateFile(path)
	if err != nil {
		return nil, fmt.Errorf("storage: kept info: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxInfoSize+1))
	if err != nil {
		return nil, fmt.Errorf("storage: kept info: %w", err)
	}
	if len(b) > MaxInfoSize {
		return nil, fmt.Errorf("storage: %s: %w: larger than %d bytes", path, ErrDamaged, MaxInfoSize)
	}
	if v2 := sha256.Sum256(b); sha1.Sum(b) != ih && [20]byte(v2[:20]) != ih {
		return nil, fmt.Errorf("storage: %s: %w: it does not hash to the infohash", path, ErrDamaged)
	}
	return b, nil
}

// openStateFile opens one of our state files for reading: a regular file only (never a FIFO
// that would block, never a device), and never through a symlink at its last element.
func openStateFile(path string) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file", path, ErrDamaged)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		f.Close()
		return nil, fmt.Errorf("%s: %w: replaced while opening", path, ErrDamaged)
	}
	return f, nil
}

// hasInfo reports whether dir already keeps the info dictionary of ih, intact.
func hasInfo(dir string, ih [20]byte) bool {
	_, err := LoadInfo(dir, ih)
	return err == nil
}

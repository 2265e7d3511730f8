package storage

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ResumeName returns the resume file's name for an infohash: hidden, in the output directory.
func ResumeName(ih [20]byte) string { return "." + hex.EncodeToString(ih[:]) + ".magnetget-resume" }

// ResumePath returns the resume file's path for this storage.
func (s *Storage) ResumePath(ih [20]byte) string { return filepath.Join(s.dir, ResumeName(ih)) }

// FileStat is what the resume file remembers about each file: a piece recorded as verified is
// trusted only while its files still have this size and modification time.
type FileStat struct {
	Size  int64 `json:"size"`  // -1: absent
	MTime int64 `json:"mtime"` // UnixNano
}

type resumeFile struct {
	Version     int        `json:"version"`
	InfoHash    string     `json:"infohash"`
	PieceLength int64      `json:"piece_length"`
	Pieces      int        `json:"pieces"`
	Have        []byte     `json:"have"` // wire-order bitfield
	Files       []FileStat `json:"files"`
}

// Stat returns the current size and mtime of file i (Size -1 when absent).
func (s *Storage) Stat(i int) FileStat {
	fi, err := os.Stat(s.FilePath(i))
	if err != nil || !fi.Mode().IsRegular() {
		return FileStat{Size: -1}
	}
	return FileStat{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
}

// SaveResume records the verified pieces and the files' current stats in the resume file,
// atomically (temporary file, fsync, rename). Callers sync the data files first, so a piece
// recorded here is on disk.
func (s *Storage) SaveResume(ih [20]byte, have func(int) bool) error {
	l := s.layout
	rf := resumeFile{Version: 1, InfoHash: hex.EncodeToString(ih[:]), PieceLength: l.PieceLength,
		Pieces: l.NumPieces(), Have: make([]byte, (l.NumPieces()+7)/8)}
	for i := range l.NumPieces() {
		if have(i) {
			rf.Have[i>>3] |= 0x80 >> (i & 7)
		}
	}
	rf.Files = make([]FileStat, len(l.Files))
	for i := range l.Files {
		rf.Files[i] = s.Stat(i)
	}
	b, err := json.Marshal(&rf)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	path := s.ResumePath(ih)
	tmp, err := os.CreateTemp(s.dir, ResumeName(ih)+".tmp*")
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("resume: %w", err)
	}
	return nil
}

// ResumeState is what the resume file says about each piece.
type ResumeState struct {
	// Verified: recorded as verified, and every file the piece overlaps still has the recorded
	// size and mtime. Such pieces are trusted without hashing.
	Verified []bool
	// Known: every file the piece overlaps is unchanged since the save, so a piece not
	// Verified is known to be incomplete and need not be hashed either.
	Known []bool
}

// LoadResume reads the resume file. A missing, foreign or damaged file vouches for nothing
// (err is non-nil only for damage worth a warning).
func (s *Storage) LoadResume(ih [20]byte) (ResumeState, error) {
	l := s.layout
	st := ResumeState{Verified: make([]bool, l.NumPieces()), Known: make([]bool, l.NumPieces())}
	b, err := os.ReadFile(s.ResumePath(ih))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("resume: %w", err)
	}
	var rf resumeFile
	if err := json.Unmarshal(b, &rf); err != nil {
		return st, fmt.Errorf("resume: %s: %w", s.ResumePath(ih), err)
	}
	if rf.Version != 1 || rf.InfoHash != hex.EncodeToString(ih[:]) || rf.PieceLength != l.PieceLength ||
		rf.Pieces != l.NumPieces() || len(rf.Have) != (l.NumPieces()+7)/8 || len(rf.Files) != len(l.Files) {
		return st, fmt.Errorf("resume: %s does not match this torrent", s.ResumePath(ih))
	}
	same := make([]bool, len(l.Files))
	for i := range l.Files {
		cur := s.Stat(i)
		// An absent file that was absent at the save is unchanged too.
		same[i] = cur == rf.Files[i]
	}
	for i := range st.Verified {
		first, last := l.PieceFiles(i)
		ok := true
		for f := first; f <= last; f++ {
			if l.Files[f].Length > 0 && !same[f] {
				ok = false
			}
		}
		st.Known[i] = ok
		st.Verified[i] = ok && rf.Have[i>>3]&(0x80>>(i&7)) != 0
	}
	return st, nil
}

// PieceOnDisk reports whether every file piece i overlaps exists and is long enough to hold
// its part, i.e. whether hashing it could succeed.
func (s *Storage) PieceOnDisk(i int, stats []FileStat) bool {
	l := s.layout
	first, last := l.PieceFiles(i)
	end := int64(i)*l.PieceLength + l.PieceSize(i)
	for f := first; f <= last; f++ {
		fi := l.Files[f]
		if fi.Length == 0 || fi.Pad {
			continue
		}
		need := min(fi.Length, end-fi.Offset)
		if stats[f].Size < need {
			return false
		}
	}
	return true
}

// HashPiece reads piece i from disk and reports whether its SHA-1 matches the info
// dictionary. buf is scratch space (any size > 0); reusing it keeps memory flat.
func (s *Storage) HashPiece(i int, buf []byte) (bool, error) {
	l := s.layout
	h := sha1.New()
	off := int64(i) * l.PieceLength
	for n := l.PieceSize(i); n > 0; {
		k := int(min(int64(len(buf)), n))
		if err := s.ReadAt(buf[:k], off); err != nil {
			return false, err
		}
		h.Write(buf[:k])
		off += int64(k)
		n -= int64(k)
	}
	var sum [20]byte
	h.Sum(sum[:0])
	return sum == l.Hashes[i], nil
}

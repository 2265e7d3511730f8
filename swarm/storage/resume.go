package storage

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// ResumeName returns the resume file's name for an infohash: hidden, in the output directory.
func ResumeName(ih [20]byte) string { return "." + hex.EncodeToString(ih[:]) + ".magnetget-resume" }

// ResumePath returns the resume file's path for this storage.
func (s *Storage) ResumePath(ih [20]byte) string { return filepath.Join(s.dir, ResumeName(ih)) }

// FileStat is what the resume file remembers about each file: a piece recorded as verified is
// trusted only while its files still have this size and modification time.
type FileStat struct {
	Size  int64 `json:"size"`  // -1: absent (or not a regular file reached without a symlink)
	MTime int64 `json:"mtime"` // UnixNano
}

// unknownSize marks a file whose state was not recorded: it never equals a current FileStat,
// so nothing about its pieces is trusted without hashing.
const unknownSize = -2

type fileState struct {
	FileStat
	Ours bool `json:"ours,omitempty"` // created by this download, or adopted: ours to write
}

type resumeFile struct {
	Version     int         `json:"version"`
	InfoHash    string      `json:"infohash"`
	PieceLength int64       `json:"piece_length"`
	Pieces      int         `json:"pieces"`
	Have        []byte      `json:"have"` // wire-order bitfield
	Files       []fileState `json:"files"`
}

const resumeVersion = 2

// Stat returns the current size and mtime of file i (Size -1 when absent). Below a download's
// output directory nothing is followed: a symlink counts as absent.
func (s *Storage) Stat(i int) FileStat {
	if s.opts.ReadOnly {
		fi, err := s.root.Stat(s.layout.Files[i].Path)
		if err != nil || !fi.Mode().IsRegular() {
			return FileStat{Size: -1}
		}
		return FileStat{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	}
	size, mtime, ok := s.tree.lstat(s.layout.Files[i].Path)
	if !ok {
		return FileStat{Size: -1}
	}
	return FileStat{Size: size, MTime: mtime}
}

// maxResumeSize bounds the resume file we read for a layout: its JSON is a base64 bitfield and
// one small object per file.
func maxResumeSize(l *Layout) int64 {
	return 4096 + 2*int64(l.NumPieces()/8+1) + 128*int64(len(l.Files))
}

// readResume reads and checks the resume file. A missing one is (nil, nil).
func (s *Storage) readResume(ih [20]byte) (*resumeFile, error) {
	path := s.ResumePath(ih)
	f, err := openStateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxResumeSize(s.layout)+1))
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	rf, err := decodeResume(b, ih, s.layout)
	if err != nil {
		return nil, fmt.Errorf("resume: %s: %w", path, err)
	}
	return rf, nil
}

// decodeResume parses a resume file's bytes and checks they describe this torrent. Any bytes
// give a resume file or an error wrapping ErrDamaged, never a panic, and allocate in proportion
// to their length.
func decodeResume(b []byte, ih [20]byte, l *Layout) (*resumeFile, error) {
	if int64(len(b)) > maxResumeSize(l) {
		return nil, fmt.Errorf("%w: %d bytes, more than a resume file of this torrent can be", ErrDamaged, len(b))
	}
	var rf resumeFile
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if rf.Version != 1 && rf.Version != resumeVersion || rf.InfoHash != hex.EncodeToString(ih[:]) || rf.PieceLength != l.PieceLength ||
		rf.Pieces != l.NumPieces() || len(rf.Have) != (l.NumPieces()+7)/8 || len(rf.Files) != len(l.Files) {
		return nil, fmt.Errorf("%w: it does not match this torrent", ErrDamaged)
	}
	if rf.Version == 1 {
		// Version 1 kept no ownership: a file it saw existing was being downloaded by it.
		for i := range rf.Files {
			rf.Files[i].Ours = rf.Files[i].Size >= 0
		}
	}
	return &rf, nil
}

// claim decides which files this download owns and records that in the resume state before
// any file is created, so that a crash at any later point cannot leave a file of ours that a
// rerun would take for someone else's.
func (s *Storage) claim() error {
	rf, err := s.readResume(s.opts.InfoHash)
	if err != nil {
		rf = nil // vouches for nothing; LoadResume reports the damage
	}
	fresh := rf == nil
	if fresh {
		l := s.layout
		rf = &resumeFile{InfoHash: hex.EncodeToString(s.opts.InfoHash[:]), PieceLength: l.PieceLength,
			Pieces: l.NumPieces(), Have: make([]byte, (l.NumPieces()+7)/8), Files: make([]fileState, len(l.Files))}
		for i := range rf.Files {
			rf.Files[i].Size = unknownSize
		}
	}
	changed := fresh || rf.Version != resumeVersion
	rf.Version = resumeVersion
	for i, f := range s.layout.Files {
		ours := f.Pad || s.opts.Force || rf.Files[i].Ours
		if !ours {
			// Absent (we will create it) or empty (nothing to lose): ours. Something that is
			// not a regular file is refused when opened.
			st := s.Stat(i)
			ours = st.Size <= 0
		}
		s.ours[i] = ours
		if rf.Files[i].Ours != ours {
			rf.Files[i].Ours = ours
			changed = true
		}
	}
	if !changed {
		return nil
	}
	b, err := json.Marshal(rf)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := s.tree.writeAtomic(ResumeName(s.opts.InfoHash), b); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	return nil
}

// SaveResume records the verified pieces, the files' current stats and which files are ours
// in the resume file, atomically (temporary file, fsync, rename, fsync of the directory).
// Callers sync the data files first, so a piece recorded here is on disk. ih must be the
// Options.InfoHash the storage was opened with. ReadOnly storage saves nothing.
func (s *Storage) SaveResume(ih [20]byte, have func(int) bool) error {
	if s.opts.ReadOnly {
		return nil
	}
	l := s.layout
	rf := resumeFile{Version: resumeVersion, InfoHash: hex.EncodeToString(ih[:]), PieceLength: l.PieceLength,
		Pieces: l.NumPieces(), Have: make([]byte, (l.NumPieces()+7)/8)}
	for i := range l.NumPieces() {
		if have(i) {
			rf.Have[i>>3] |= 0x80 >> (i & 7)
		}
	}
	rf.Files = make([]fileState, len(l.Files))
	for i := range l.Files {
		rf.Files[i].FileStat = s.Stat(i)
	}
	s.mu.Lock()
	closed := s.closed
	for i := range rf.Files {
		rf.Files[i].Ours = s.ours[i]
	}
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	b, err := json.Marshal(&rf)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := s.tree.writeAtomic(ResumeName(ih), b); err != nil {
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
// (err is non-nil only for damage worth a warning). ReadOnly storage writes none, but reads
// one a download left (seeding what `get` fetched need not hash it all again).
func (s *Storage) LoadResume(ih [20]byte) (ResumeState, error) {
	l := s.layout
	st := ResumeState{Verified: make([]bool, l.NumPieces()), Known: make([]bool, l.NumPieces())}
	rf, err := s.readResume(ih)
	if rf == nil {
		return st, err
	}
	stats := make([]FileStat, len(l.Files))
	for i := range l.Files {
		stats[i] = s.Stat(i)
	}
	rf.state(l, stats, st)
	return st, nil
}

// state fills st from the resume file and the files' current stats.
func (rf *resumeFile) state(l *Layout, stats []FileStat, st ResumeState) {
	same := make([]bool, len(l.Files))
	for i := range l.Files {
		// An absent file that was absent at the save is unchanged too.
		same[i] = stats[i] == rf.Files[i].FileStat
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
// dictionary. buf is scratch space (any size > 0); reusing it keeps memory flat. A piece that
// verifies makes the files it overlaps ours (see Storage).
func (s *Storage) HashPiece(i int, buf []byte) (bool, error) {
	return s.VerifyPiece(i, buf, sha1.New(), func(sum []byte) bool { return bytes.Equal(sum, s.layout.Hashes[i][:]) })
}

// VerifyPiece is HashPiece with the hash and the check given: a BitTorrent v2 piece is hashed
// as a merkle tree of its blocks (h sees the whole piece, padding included, and decides what
// counts) and checked against a piece layer the layout does not hold.
func (s *Storage) VerifyPiece(i int, buf []byte, h hash.Hash, ok func(sum []byte) bool) (bool, error) {
	l := s.layout
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
	good := ok(h.Sum(nil))
	if good {
		s.adopt(i)
	}
	return good, nil
}

// printable returns s as is when it holds only printable characters, else quoted with escapes,
// so that a name from a torrent cannot drive the user's terminal.
func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

package realclient

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// FileSpec is one file of a multi-file payload; Path uses "/".
type FileSpec struct {
	Path string
	Size int64
}

// PayloadSpec describes test data. Content is a pure function of Seed and
// the file layout, so seeder and checker agree without keeping a copy.
type PayloadSpec struct {
	// Name of the single file, or of the folder when Files is set;
	// "" means "payload".
	Name string
	// Size of the single file (used when Files is empty).
	Size int64
	// Files makes a multi-file torrent (zero sizes allowed).
	Files []FileSpec
	// PieceLength; 0 means anacrolix's choice for the size.
	PieceLength int64
	// Seed for the content; 0 means 1.
	Seed uint64
	// Trackers for the announce list; loopback URLs only.
	Trackers []string
}

// Payload is test data on disk and its v1 torrent.
type Payload struct {
	Name      string
	DataDir   string // parent of the content: the save path for clients
	Torrent   string // path of the .torrent file
	InfoHash  [20]byte
	InfoBytes []byte // the bencoded info dict
	Length    int64
	Info      metainfo.Info
}

// MakePayload writes spec's data under dir/data and dir/<name>.torrent.
func MakePayload(dir string, spec PayloadSpec) (*Payload, error) {
	if spec.Name == "" {
		spec.Name = "payload"
	}
	if spec.Seed == 0 {
		spec.Seed = 1
	}
	if strings.ContainsAny(spec.Name, `/\`) || spec.Name == "." || spec.Name == ".." {
		return nil, fmt.Errorf("payload: bad name %q", spec.Name)
	}
	for _, tr := range spec.Trackers {
		if err := checkLoopbackURL(tr); err != nil {
			return nil, fmt.Errorf("payload tracker: %w", err)
		}
	}
	dataDir := filepath.Join(dir, "data")
	root := filepath.Join(dataDir, spec.Name)
	rng := rand.New(rand.NewChaCha8(seedBytes(spec.Seed)))
	if len(spec.Files) == 0 {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		if err := writeRandom(root, spec.Size, rng); err != nil {
			return nil, err
		}
	} else {
		for _, f := range spec.Files {
			clean := filepath.Clean(filepath.FromSlash(f.Path))
			if !filepath.IsLocal(clean) {
				return nil, fmt.Errorf("payload: bad file path %q", f.Path)
			}
			p := filepath.Join(root, clean)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, fmt.Errorf("payload: %w", err)
			}
			if err := writeRandom(p, f.Size, rng); err != nil {
				return nil, err
			}
		}
	}
	info := metainfo.Info{PieceLength: spec.PieceLength}
	if err := info.BuildFromFilePath(root); err != nil {
		return nil, fmt.Errorf("payload: hashing: %w", err)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	mi := metainfo.MetaInfo{InfoBytes: infoBytes, CreatedBy: "magnetget realclient"}
	if len(spec.Trackers) > 0 {
		mi.Announce = spec.Trackers[0]
		mi.AnnounceList = [][]string{spec.Trackers}
	}
	tpath := filepath.Join(dir, spec.Name+".torrent")
	var buf bytes.Buffer
	if err := mi.Write(&buf); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if err := os.WriteFile(tpath, buf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return &Payload{
		Name:      spec.Name,
		DataDir:   dataDir,
		Torrent:   tpath,
		InfoHash:  sha1.Sum(infoBytes),
		InfoBytes: infoBytes,
		Length:    info.TotalLength(),
		Info:      info,
	}, nil
}

func seedBytes(seed uint64) [32]byte {
	var b [32]byte
	for i := range 8 {
		b[i] = byte(seed >> (8 * i))
	}
	return b
}

func writeRandom(path string, size int64, rng *rand.Rand) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	buf := make([]byte, 64<<10)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		for i := 0; i < len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
		}
		if _, err := w.Write(buf[:n]); err != nil {
			f.Close()
			return fmt.Errorf("payload: %w", err)
		}
		left -= n
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("payload: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	return nil
}

// Hex is the infohash in lowercase hex.
func (p *Payload) Hex() string { return hex.EncodeToString(p.InfoHash[:]) }

// Magnet returns a magnet URI for the payload with optional x.pe peer hints
// (which aria2 ignores).
func (p *Payload) Magnet(peers ...netip.AddrPort) string { return p.MagnetURI(nil, peers) }

// MagnetURI returns a magnet URI with trackers (tr=, e.g. Tracker.URL) and
// x.pe peer hints.
func (p *Payload) MagnetURI(trackers []string, peers []netip.AddrPort) string {
	var b strings.Builder
	b.WriteString("magnet:?xt=urn:btih:" + p.Hex() + "&dn=" + url.QueryEscape(p.Name))
	for _, tr := range trackers {
		b.WriteString("&tr=" + url.QueryEscape(tr))
	}
	for _, pe := range peers {
		b.WriteString("&x.pe=" + pe.String())
	}
	return b.String()
}

// ErrContentMismatch: a downloaded tree differs from the payload.
var ErrContentMismatch = errors.New("content differs from payload")

// Compare checks that dir (a client's save path) holds exactly the
// payload's files, byte for byte. Zero-length files must exist too.
func (p *Payload) Compare(dir string) error {
	for _, f := range p.Info.UpvertedFiles() {
		rel := filepath.Join(append([]string{p.Name}, f.Path...)...)
		if err := compareFile(filepath.Join(p.DataDir, rel), filepath.Join(dir, rel)); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	return nil
}

func compareFile(want, got string) error {
	a, err := os.Open(want)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := os.Open(got)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrContentMismatch, err)
	}
	defer b.Close()
	ra, rb := bufio.NewReaderSize(a, 1<<20), bufio.NewReaderSize(b, 1<<20)
	bufA, bufB := make([]byte, 256<<10), make([]byte, 256<<10)
	var off int64
	for {
		na, errA := io.ReadFull(ra, bufA)
		nb, errB := io.ReadFull(rb, bufB)
		if !bytes.Equal(bufA[:na], bufB[:nb]) {
			return fmt.Errorf("%w: first difference in the %d bytes at offset %d", ErrContentMismatch, max(na, nb), off)
		}
		off += int64(na)
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		if errA != nil && !endA {
			return errA
		}
		if errB != nil && !endB {
			return errB
		}
		if endA || endB {
			if endA != endB {
				return fmt.Errorf("%w: length differs after %d bytes", ErrContentMismatch, off)
			}
			return nil
		}
	}
}

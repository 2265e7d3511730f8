package metadata_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
	"github.com/magnetget/magnetget/torrentfile"
)

// v2Info creates a v2-only or hybrid torrent of two small files and returns its info dict.
func v2Info(t *testing.T, hybrid bool) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "v2set")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"a.bin": 100_000, "b.bin": 40_000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tor, err := torrentfile.CreateTorrent(t.Context(), dir, torrentfile.Options{PieceLength: 32 << 10, V2: !hybrid, Hybrid: hybrid})
	if err != nil {
		t.Fatal(err)
	}
	return tor.Meta.InfoBytes
}

// Issue 12: a hybrid torrent is announced under the first 20 bytes of its SHA-256 infohash too.
// Fetched that way the result says so (Matched V2, both halves), so callers continue under the
// hash the connections speak instead of comparing hashes themselves; a v1-only info dict under
// the truncated SHA-256 of itself is not a v2 torrent and is refused, as is one matching neither.
func TestFetchByTruncatedV2InfoHash(t *testing.T) {
	info := v2Info(t, true)
	v2 := sha256.Sum256(info)
	s := metadatatest.NewSeeder(t, info, metadatatest.Behavior{InfoHash: [20]byte(v2[:20])})
	res, err := fetch(t, s.InfoHash, metadata.Options{}, s.Addr)
	checkInfo(t, res, err, info)
	h := res.Hashes
	if h.Matched != metadata.V2 || !h.Hybrid() || h.V1 != sha1.Sum(info) || h.V2 != v2 || h.SwarmHash() != s.InfoHash {
		t.Fatalf("hashes %+v: want a hybrid matched by its v2 hash", h)
	}

	v1only := sha256.Sum256(singleInfo)
	s1 := metadatatest.NewSeeder(t, singleInfo, metadatatest.Behavior{InfoHash: [20]byte(v1only[:20])})
	if _, err := fetch(t, s1.InfoHash, fastOpts, s1.Addr); !errors.Is(err, metadata.ErrHashMismatch) {
		t.Fatalf("a v1 info dict under its truncated SHA-256: %v, want ErrHashMismatch", err)
	}
	other := sha256.Sum256([]byte("another torrent"))
	liar := metadatatest.NewSeeder(t, info, metadatatest.Behavior{InfoHash: [20]byte(other[:20])})
	if _, err := fetch(t, liar.InfoHash, fastOpts, liar.Addr); !errors.Is(err, metadata.ErrHashMismatch) {
		t.Fatalf("info dict under an unrelated infohash: %v, want ErrHashMismatch", err)
	}
}

// A btmh magnet: a v2-only torrent fetched by its truncated hash with the full SHA-256 given is
// checked against all 32 bytes; a peer whose dict matches the first 20 only cannot exist, but a
// full hash that disagrees with the 20-byte one must fail rather than be ignored.
func TestFetchV2OnlyByFullHash(t *testing.T) {
	info := v2Info(t, false)
	v2 := sha256.Sum256(info)
	s := metadatatest.NewSeeder(t, info, metadatatest.Behavior{InfoHash: [20]byte(v2[:20])})
	res, err := fetch(t, s.InfoHash, metadata.Options{InfoHashV2: v2}, s.Addr)
	checkInfo(t, res, err, info)
	if h := res.Hashes; h.Matched != metadata.V2 || h.HasV1 || !h.HasV2 || h.V2 != v2 {
		t.Fatalf("hashes %+v: want v2-only matched by v2", h)
	}
	wrong := v2
	wrong[31] ^= 1
	if _, err := fetch(t, s.InfoHash, metadata.Options{InfoHashV2: wrong, RequestTimeout: fastOpts.RequestTimeout}, s.Addr); !errors.Is(err, metadata.ErrHashMismatch) {
		t.Fatalf("full v2 hash differing in its last byte: %v, want ErrHashMismatch", err)
	}
}

func TestIdentify(t *testing.T) {
	hyb := v2Info(t, true)
	v2 := sha256.Sum256(hyb)
	v1 := sha1.Sum(hyb)
	s1 := sha256.Sum256(singleInfo)
	for _, tc := range []struct {
		name string
		info []byte
		ih   [20]byte
		full *[32]byte
		want metadata.Version
	}{
		{"hybrid by v1", hyb, v1, nil, metadata.V1},
		{"hybrid by v1 and full v2 (dual xt)", hyb, v1, &v2, metadata.V1},
		{"hybrid by truncated v2", hyb, [20]byte(v2[:20]), &v2, metadata.V2},
		{"v1 by sha1", singleInfo, sha1.Sum(singleInfo), nil, metadata.V1},
		{"v1 by truncated sha256", singleInfo, [20]byte(s1[:20]), nil, 0},
		{"garbage", []byte("d4:name"), sha1.Sum([]byte("d4:name")), nil, 0},
	} {
		h, err := metadata.Identify(tc.info, tc.ih, tc.full)
		if tc.want == 0 {
			if !errors.Is(err, metadata.ErrHashMismatch) {
				t.Errorf("%s: %v, want ErrHashMismatch", tc.name, err)
			}
			continue
		}
		if err != nil || h.Matched != tc.want {
			t.Errorf("%s: matched %v, %v; want %v", tc.name, h.Matched, err, tc.want)
		}
	}
}

package crawl

import (
	"errors"
	"github.com/magnetget/magnetget/internal/alloctest"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/magnetget/magnetget/crawl/index"
)

func mustInfo(t testing.TB, info metainfo.Info) []byte {
	t.Helper()
	if info.PieceLength == 0 {
		info.PieceLength = 16384
		info.Pieces = make([]byte, 20)
	}
	b, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseInfo(t *testing.T) {
	single := mustInfo(t, metainfo.Info{Name: "a.iso", Length: 1234})
	md, err := ParseInfo(single)
	if err != nil || md.Name != "a.iso" || md.Size != 1234 || len(md.Files) != 1 || md.Files[0].Path[0] != "a.iso" {
		t.Fatalf("single-file: %+v, %v", md, err)
	}
	multi := mustInfo(t, metainfo.Info{Name: "dir", Files: []metainfo.FileInfo{
		{Path: []string{"x", "1.txt"}, Length: 10}, {Path: []string{"2.txt"}, Length: 5},
	}})
	md, err = ParseInfo(multi)
	if err != nil || md.Name != "dir" || md.Size != 15 || len(md.Files) != 2 || strings.Join(md.Files[0].Path, "/") != "x/1.txt" {
		t.Fatalf("multi-file: %+v, %v", md, err)
	}
	for name, b := range map[string][]byte{
		"not bencode":     []byte("hello"),
		"negative length": mustInfo(t, metainfo.Info{Name: "n", Length: -1}),
		"negative file":   mustInfo(t, metainfo.Info{Name: "n", Files: []metainfo.FileInfo{{Path: []string{"a"}, Length: -5}}}),
	} {
		if _, err := ParseInfo(b); !errors.Is(err, ErrBadInfo) {
			t.Errorf("%s: err = %v, want ErrBadInfo", name, err)
		}
	}
}

// FuzzParseInfo: info dictionaries come off the wire (BEP 9), so the
// parser must never panic and must never report a negative size.
func FuzzParseInfo(f *testing.F) {
	f.Add(mustInfo(f, metainfo.Info{Name: "a.iso", Length: 1234}))
	f.Add(mustInfo(f, metainfo.Info{Name: "dir", Files: []metainfo.FileInfo{{Path: []string{"x", "1"}, Length: 10}}}))
	f.Add([]byte("d4:name1:a6:lengthi-1ee"))
	f.Add([]byte("d5:filesld6:lengthi9223372036854775807e4:pathl1:aeed6:lengthi9223372036854775807e4:pathl1:beee4:name1:xe"))
	f.Add([]byte("d4:name134217000:x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var md index.Metadata
		var err error
		// Bound: a small multiple of the input plus a constant for the
		// decoder's own state (reflection, maps).
		alloc := alloctest.Bytes(func() { md, err = ParseInfo(b) })
		if limit := uint64(64*len(b) + 256<<10); alloc > limit {
			t.Fatalf("ParseInfo of %d bytes allocated %d bytes (limit %d)", len(b), alloc, limit)
		}
		if err != nil {
			return
		}
		if md.Size < 0 {
			t.Fatalf("negative size %d", md.Size)
		}
	})
}

// TestParseInfoHugeStringClaim: an 18-byte info dict that claims a string
// of 134,217,000 bytes (issue 9 row 9) must be refused without allocating
// anything near that: the decoder's string cap is the input length.
func TestParseInfoHugeStringClaim(t *testing.T) {
	b := []byte("d4:name134217000:x")
	if len(b) != 18 {
		t.Fatalf("test input is %d bytes", len(b))
	}
	alloc := alloctest.Bytes(func() {
		if _, err := ParseInfo(b); !errors.Is(err, ErrBadInfo) {
			t.Errorf("err = %v, want ErrBadInfo", err)
		}
	})
	if alloc > 1<<20 {
		t.Fatalf("ParseInfo of %d bytes allocated %d bytes", len(b), alloc)
	}
}

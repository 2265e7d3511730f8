package crawl

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/torrentfile"
)

// noDHT is a node with no peers for anything.
type noDHT struct{}

func (noDHT) SampleInfohashes(context.Context, netip.AddrPort, [20]byte) (dht.Sample, error) {
	return dht.Sample{}, nil
}
func (noDHT) FindNode(context.Context, netip.AddrPort, [20]byte) ([]netip.AddrPort, error) {
	return nil, nil
}
func (noDHT) Lookup(context.Context, [20]byte, func(dht.PeerResult) bool) error { return nil }

func createInfo(t *testing.T, o torrentfile.Options) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "set")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"a.bin": 70_000, "sub/b.bin": 20_000} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o.PieceLength = 32 << 10
	tor, err := torrentfile.CreateTorrent(t.Context(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return tor.Meta.InfoBytes
}

// Issue 12: the crawler meets hybrid and v2 torrents under their truncated SHA-256 (libtorrent 2
// announces both keys). Their metadata is recorded instead of failing the hash check and being
// retried forever; a hybrid is one torrent, so its v1 key gets the same metadata (no padding
// files listed), and a v2-only torrent's sizes come from its file tree.
func TestFetchOneRecordsV2AndHybrid(t *testing.T) {
	x, err := index.Open(filepath.Join(t.TempDir(), "crawl.db"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	hyb := createInfo(t, torrentfile.Options{Hybrid: true})
	v2only := createInfo(t, torrentfile.Options{V2: true})
	infos := map[[20]byte][]byte{}
	trunc := func(b []byte) [20]byte { h := sha256.Sum256(b); return [20]byte(h[:20]) }
	infos[trunc(hyb)] = hyb
	infos[trunc(v2only)] = v2only
	fetch := func(_ context.Context, ih [20]byte, peers <-chan netip.AddrPort) ([]byte, error) {
		for range peers {
		}
		return infos[ih], nil
	}
	c := &Crawler{Index: x, Node: noDHT{}, MetadataTimeout: 5 * time.Second}
	for ih := range infos {
		if err := x.Observe(ih, index.GetPeers, netip.AddrPort{}, time.Now()); err != nil {
			t.Fatal(err)
		}
		c.fetchOne(t.Context(), fetch, index.Entry{InfoHash: ih})
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, ih := range [][20]byte{trunc(hyb), sha1.Sum(hyb), trunc(v2only)} {
		e, ok, err := x.Get(ih)
		if err != nil || !ok || e.Meta != index.MetaFetched {
			t.Fatalf("%x: entry %+v (found %v, %v): want metadata fetched", ih, e, ok, err)
		}
		if e.Name != "set" || e.Size != 90_000 || len(e.Files) != 2 {
			t.Errorf("%x: recorded %q, %d bytes, %d files; want set, 90000, 2", ih, e.Name, e.Size, len(e.Files))
		}
	}
	if n := c.failed.Load(); n != 0 {
		t.Errorf("%d fetches counted failed", n)
	}
}

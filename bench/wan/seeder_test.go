package wan

import (
	"bytes"
	"context"
	"crypto/sha1"
	"net/netip"
	"testing"
	"time"

	"github.com/magnetget/magnetget/internal/netem"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// TestMetaSeederBehindNetem checks the benchmarks' metadata seeder: metadata.Fetch gets the
// whole info dict (two BEP 9 pieces) through a delayed link.
func TestMetaSeederBehindNetem(t *testing.T) {
	info := metadatatest.SingleFileInfo(3, "wan.bin", 1<<30, 1<<20)
	s := startMetaSeeder(t, netip.MustParseAddr("127.0.0.1"), info, netem.Symmetric(20*time.Millisecond, 1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := metadata.Fetch(ctx, sha1.Sum(info), metadatatest.Peers(s.Addr), metadata.Options{})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for _, c := range res.Conns {
		c.Close()
	}
	if !bytes.Equal(res.Info, info) {
		t.Fatalf("got %d bytes of info, want the %d served", len(res.Info), len(info))
	}
}

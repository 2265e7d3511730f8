package index_test

import (
	"path/filepath"
	"testing"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/crawl/index/indextest"
)

// TestStoreSuite: the bbolt index passes the behaviour suite every crawl
// index passes (pgindex runs the same one against PostgreSQL).
func TestStoreSuite(t *testing.T) {
	indextest.Run(t, func(t *testing.T, o indextest.Options) index.Store {
		x, err := index.Open(filepath.Join(t.TempDir(), "crawl.db"), index.Options{
			Now: o.Now, MaxPeers: o.MaxPeers, PeerRetention: o.PeerRetention,
			PruneInterval: o.PruneInterval, PruneBatch: o.PruneBatch, FlushInterval: o.FlushInterval,
		})
		if err != nil {
			t.Fatal(err)
		}
		return x
	})
}

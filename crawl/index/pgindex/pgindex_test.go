package pgindex

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/crawl/index/indextest"
	"github.com/magnetget/magnetget/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openT(t testing.TB, url string, o Options) *Index {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x, err := Open(ctx, url, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return x
}

// TestStoreSuite: the PostgreSQL index passes the same behaviour suite as
// the bbolt one.
func TestStoreSuite(t *testing.T) {
	indextest.Run(t, func(t *testing.T) index.Store { return openT(t, pgtest.New(t), Options{}) })
}

package realclient_test

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/magnetget/magnetget/internal/realclient"
	"github.com/magnetget/magnetget/internal/realclient/rctest"
)

// One libtorrent DHT and one seeder serve every test that needs them:
// starting them takes a few seconds, and the package's tests must stay
// well under a minute.
var shared struct {
	once    sync.Once
	err     error
	dir     string
	payload *realclient.Payload
	dht     *realclient.LibtorrentDHT
	seeder  *realclient.LibtorrentSeeder
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.seeder != nil {
		shared.seeder.Close()
	}
	if shared.dht != nil {
		shared.dht.Close()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// sharedNet returns a 30-node libtorrent DHT and a libtorrent seeder that
// has announced a multi-file payload (with an empty file and sizes that are
// not multiples of the piece length) into it.
func sharedNet(t testing.TB) (*realclient.LibtorrentDHT, *realclient.LibtorrentSeeder, *realclient.Payload) {
	t.Helper()
	rctest.Require(t, realclient.LibtorrentAvailable)
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), rctest.StartTimeout)
		defer cancel()
		shared.dir, shared.err = os.MkdirTemp("", "realclient-shared-")
		if shared.err != nil {
			return
		}
		shared.payload, shared.err = realclient.MakePayload(shared.dir, realclient.PayloadSpec{
			Name:        "multi",
			PieceLength: 64 << 10,
			Files: []realclient.FileSpec{
				{Path: "a.bin", Size: 3<<20 + 7},
				{Path: "sub/empty", Size: 0},
				{Path: "sub/b.txt", Size: 12345},
			},
		})
		if shared.err != nil {
			return
		}
		var logger *slog.Logger
		if os.Getenv("REALCLIENT_DEBUG") != "" {
			logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		shared.dht, shared.err = realclient.StartLibtorrentDHT(ctx, realclient.DHTConfig{Nodes: 30, Logger: logger})
		if shared.err != nil {
			return
		}
		if shared.err = shared.dht.WaitNodes(ctx, 8); shared.err != nil {
			return
		}
		shared.seeder, shared.err = realclient.StartLibtorrentSeeder(ctx, realclient.SeederConfig{
			Torrent: shared.payload.Torrent, DataDir: shared.payload.DataDir, Bootstrap: shared.dht.Addrs()[:4], Logger: logger,
		})
		if shared.err != nil {
			return
		}
		shared.err = shared.seeder.WaitAnnounced(ctx)
	})
	if shared.err != nil {
		t.Fatalf("shared libtorrent network: %v", shared.err)
	}
	return shared.dht, shared.seeder, shared.payload
}

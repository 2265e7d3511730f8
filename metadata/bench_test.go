package metadata_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// BenchmarkFetch measures a whole Fetch over loopback: dials, handshakes, pieces, SHA-1.
func BenchmarkFetch(b *testing.B) {
	dicts := []struct {
		name string
		info []byte
	}{
		{"small", metadatatest.MultiFileInfo(5, "small", 20, 1<<20, 1<<20)},
		{"4MiB", metadatatest.LargeInfo(6, 4<<20)},
	}
	for _, d := range dicts {
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/%dseeders", d.name, n), func(b *testing.B) {
				ss := metadatatest.Seeders(b, d.info, n)
				addrs := metadatatest.Addrs(ss...)
				b.SetBytes(int64(len(d.info)))
				b.ReportAllocs()
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					res, err := metadata.Fetch(ctx, ss[0].InfoHash, metadatatest.Peers(addrs...), metadata.Options{})
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					for _, c := range res.Conns {
						c.Close()
					}
				}
			})
		}
	}
}

package metadata_test

import (
	"context"
	"crypto/sha1"
	"net/netip"
	"testing"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/dht/dhttest"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/metadata/metadatatest"
)

// TestFetchThroughDHT finds serving peers only through an in-process DHT:
// each seeder is announced at a node of a 32-node loopback network, and a
// newcomer knowing one node looks the infohash up and fetches from what it
// finds — single-file, nested multi-file and a 10k-file dict of several MiB.
func TestFetchThroughDHT(t *testing.T) {
	nodes := dhttest.Network(t, 32)
	cases := map[string][]byte{
		"single":    singleInfo,
		"multi":     multiInfo,
		"10k files": metadatatest.LargeInfo(4, 4<<20),
	}
	i := 0
	for name, info := range cases {
		t.Run(name, func(t *testing.T) {
			i++
			ss := metadatatest.Seeders(t, info, 2)
			ih := sha1.Sum(info)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for k, s := range ss {
				// Announce the seeder's own port from a node on its IP
				// (127.0.0.1): the DHT stores the announcing IP.
				ann, err := dht.New(dht.Config{Addr: netip.AddrPortFrom(s.Addr.Addr(), 0), Rate: -1, ResendDelay: 250 * time.Millisecond,
					Bootstrap: []netip.AddrPort{nodes[(i*5+k)%len(nodes)].Addr()}})
				if err != nil {
					t.Fatal(err)
				}
				if err := ann.Bootstrap(ctx); err != nil {
					t.Fatal(err)
				}
				if err := ann.Announce(ctx, ih, int(s.Addr.Port())); err != nil {
					t.Fatal(err)
				}
				ann.Close()
			}
			me, err := dht.New(dht.Config{Addr: netip.MustParseAddrPort("127.0.240.1:0"), Rate: -1, ResendDelay: 250 * time.Millisecond,
				Bootstrap: []netip.AddrPort{nodes[(i*11)%len(nodes)].Addr()}})
			if err != nil {
				t.Fatal(err)
			}
			defer me.Close()
			if err := me.Bootstrap(ctx); err != nil {
				t.Fatal(err)
			}
			peers := make(chan netip.AddrPort)
			go func() {
				defer close(peers)
				_ = me.Lookup(ctx, ih, func(r dht.PeerResult) bool {
					select {
					case peers <- r.Peer:
						return true
					case <-ctx.Done():
						return false
					}
				})
			}()
			res, err := metadata.Fetch(ctx, ih, peers, metadata.Options{})
			cancel()
			for range peers {
			}
			checkInfo(t, res, err, info)
		})
	}
}

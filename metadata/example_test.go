package metadata_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/magnetget/magnetget/metadata"
)

// Fetch takes peers from a channel (a DHT lookup, trackers, magnet x.pe hints) and returns the
// verified info dict plus the connections to hand to a swarm.
func ExampleFetch() {
	var ih [20]byte // from the magnet link
	peers := make(chan netip.AddrPort)
	go func() {
		// Closing tells Fetch no more peers will come.
		defer close(peers)
		peers <- netip.MustParseAddrPort("127.0.0.1:1") // nothing listens there
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := metadata.Fetch(ctx, ih, peers, metadata.Options{})
	for _, c := range res.Conns {
		c.Close() // or swarm.AddConn(c)
	}
	fmt.Println(err != nil, len(res.Info))
	// Output: true 0
}

package crawl

import (
	"context"
	"net/netip"

	"github.com/magnetget/magnetget/metadata"
)

// MetadataFetcher returns a FetchFunc built on metadata.Fetch with o. The
// crawler only wants the info dictionary, so the connections Fetch leaves
// open for a swarm are closed at once.
func MetadataFetcher(o metadata.Options) FetchFunc {
	return func(ctx context.Context, ih [20]byte, peers <-chan netip.AddrPort) ([]byte, error) {
		res, err := metadata.Fetch(ctx, ih, peers, o)
		for _, c := range res.Conns {
			c.Close()
		}
		if err != nil {
			return nil, err
		}
		return res.Info, nil
	}
}

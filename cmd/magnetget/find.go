package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/magnetget/magnetget/internal/peersource"
	"github.com/magnetget/magnetget/internal/trackers"
	"github.com/magnetget/magnetget/swarm"
)

// finder is one torrent's peer source (internal/peersource: DHT lookups again
// and again, one tracker session, the magnet's x.pe hints, each address dialled
// once) running from the metadata fetch to the end of the download or seed,
// with what a status line and a final failure say about it. Other clients wait
// for peers as long as the user lets them; so does magnetget.
type finder struct {
	set *dhtSet
	src *peersource.Source

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startFinder starts the source cfg describes on set, with trackers
// announced from the listen address.
func startFinder(ctx context.Context, set *dhtSet, cfg peersource.Config) *finder {
	cfg.DHT = set.Set
	cfg.TrackerClient = &trackers.Client{LocalAddr: set.localIP(), Logger: cfg.Logger}
	f := &finder{set: set, src: peersource.New(cfg)}
	rctx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	f.wg.Go(func() { f.src.Run(rctx) })
	return f
}

// stop ends the source and waits for it (the "stopped" announces included).
func (f *finder) stop() {
	f.cancel()
	f.wg.Wait()
}

// tried says what was tried, for a status line or a failure: "12 DHT nodes
// reached, 0 peers found, 0 of 1 trackers answered".
func (f *finder) tried() string {
	var parts []string
	switch n := f.set.Stats().Nodes; {
	case n == 0 && len(f.set.boot) == 0:
		parts = append(parts, "no DHT node reached (no bootstrap node and no saved table)")
	case n == 0:
		parts = append(parts, fmt.Sprintf("no DHT node reached (%d bootstrap %s tried)", len(f.set.boot), plural(len(f.set.boot), "node", "nodes")))
	default:
		parts = append(parts, fmt.Sprintf("%d DHT %s reached", n, plural(n, "node", "nodes")))
	}
	st := f.src.Stats()
	parts = append(parts, fmt.Sprintf("%d %s found", st.Found, plural(int(st.Found), "peer", "peers")))
	if st.Trackers > 0 {
		s := fmt.Sprintf("%d of %d %s answered", st.TrackersAnswered, st.Trackers, plural(st.Trackers, "tracker", "trackers"))
		if st.TrackerErr != "" && st.TrackersAnswered < st.Trackers {
			s += " (last error: " + userMessage(errorString(st.TrackerErr)) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

type errorString string

func (e errorString) Error() string { return string(e) }

// connectedPeers lists the swarm's connected peers, for the source's redial
// back-off.
func connectedPeers(sw *swarm.Swarm) func() []netip.AddrPort {
	return func() []netip.AddrPort {
		var out []netip.AddrPort
		for _, ps := range sw.PeerStats() {
			out = append(out, ps.Addr)
		}
		return out
	}
}

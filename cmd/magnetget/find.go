package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/internal/trackers"
)

// finder keeps looking for peers of one infohash until its context ends:
// DHT lookups again and again (backing off from 5 s to a minute), tracker
// announces retried on failure, plus the magnet's x.pe hints. Other clients
// wait for peers as long as the user lets them; so does magnetget, and what
// it has tried is counted so a status line and a final failure can say so.
type finder struct {
	set    *dhtSet
	ih     [20]byte
	urls   []string
	peerID [20]byte
	port   uint16
	log    *slog.Logger

	lookups  atomic.Int64
	found    atomic.Int64
	answered atomic.Int64 // trackers that answered at least once

	mu         sync.Mutex // guards trackerErr
	trackerErr string
}

// peers streams every distinct peer found, direct ones first; the channel
// closes when ctx ends and every goroutine it started has returned.
func (f *finder) peers(ctx context.Context, direct []netip.AddrPort) <-chan netip.AddrPort {
	merged := mergePeers(ctx, direct, f.dhtPeers(ctx), f.trackerPeers(ctx))
	out := make(chan netip.AddrPort)
	go func() {
		defer close(out)
		for ap := range merged {
			f.found.Add(1)
			select {
			case out <- ap:
			case <-ctx.Done():
				for range merged {
				}
				return
			}
		}
	}()
	return out
}

func (f *finder) dhtPeers(ctx context.Context) <-chan netip.AddrPort {
	ch := make(chan netip.AddrPort)
	go func() {
		defer close(ch)
		wait := 5 * time.Second
		for {
			_ = f.set.Lookup(ctx, f.ih, func(r dht.PeerResult) bool {
				select {
				case ch <- r.Peer:
					return true
				case <-ctx.Done():
					return false
				}
			})
			f.lookups.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, time.Minute)
		}
	}()
	return ch
}

func (f *finder) trackerPeers(ctx context.Context) <-chan netip.AddrPort {
	ch := make(chan netip.AddrPort)
	var wg sync.WaitGroup
	for _, u := range f.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait, answered := 15*time.Second, false
			for {
				peers, _, err := trackers.Announce(ctx, u, trackers.Request{InfoHash: f.ih, PeerID: f.peerID, Port: f.port, Left: 1, Event: trackers.Started})
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					f.log.Info("tracker", "tracker", u, "err", err)
					f.mu.Lock()
					f.trackerErr = userMessage(err)
					f.mu.Unlock()
				} else {
					if !answered {
						answered = true
						f.answered.Add(1)
					}
					for _, p := range peers {
						select {
						case ch <- p:
						case <-ctx.Done():
							return
						}
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = min(wait*2, 2*time.Minute)
			}
		}()
	}
	go func() { wg.Wait(); close(ch) }()
	return ch
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
	found := f.found.Load()
	parts = append(parts, fmt.Sprintf("%d %s found", found, plural(int(found), "peer", "peers")))
	if len(f.urls) > 0 {
		s := fmt.Sprintf("%d of %d %s answered", f.answered.Load(), len(f.urls), plural(len(f.urls), "tracker", "trackers"))
		f.mu.Lock()
		if f.trackerErr != "" && f.answered.Load() < int64(len(f.urls)) {
			s += " (last error: " + f.trackerErr + ")"
		}
		f.mu.Unlock()
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

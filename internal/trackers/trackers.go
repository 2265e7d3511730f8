// Package trackers announces to HTTP (BEP 3) and UDP (BEP 15) trackers, a
// second source of peers beside the DHT. The wire work is anacrolix/torrent's
// tracker package; this package adds what a downloader needs around it: a
// bounded announce per call, peers as netip.AddrPort, and a loop per tracker
// that honours the tracker's interval and backs off on failure.
package trackers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	anlog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent/tracker"
)

// ErrUnsupported is returned for tracker URLs whose scheme is neither
// http(s) nor udp.
var ErrUnsupported = errors.New("unsupported tracker scheme")

// Event is the announce event.
type Event int32

const (
	None      = Event(tracker.None)
	Completed = Event(tracker.Completed)
	Started   = Event(tracker.Started)
	Stopped   = Event(tracker.Stopped)
)

// Request is what we tell a tracker about ourselves.
type Request struct {
	InfoHash, PeerID           [20]byte
	Port                       uint16
	Uploaded, Downloaded, Left int64
	Event                      Event
}

// Timeout bounds one announce.
const Timeout = 15 * time.Second

// quiet keeps the tracker library's own logging out of our output: errors
// come back as values and the caller logs them with slog.
var quiet = anlog.Default.FilterLevel(anlog.Never)

// Announce makes one announce and returns the peers and the interval the
// tracker asks for.
func Announce(ctx context.Context, url string, r Request) ([]netip.AddrPort, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	res, err := tracker.Announce{
		TrackerUrl: url,
		Context:    ctx,
		Logger:     quiet,
		UserAgent:  "magnetget",
		Request: tracker.AnnounceRequest{
			InfoHash: r.InfoHash, PeerId: r.PeerID, Port: r.Port, Uploaded: r.Uploaded,
			Downloaded: r.Downloaded, Left: r.Left, Event: tracker.AnnounceEvent(r.Event), NumWant: 200,
			Key: int32(r.PeerID[19]) | int32(r.PeerID[18])<<8,
		},
	}.Do()
	if err != nil {
		if errors.Is(err, tracker.ErrBadScheme) {
			return nil, 0, fmt.Errorf("tracker %s: %w", url, ErrUnsupported)
		}
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			return nil, 0, ctx.Err()
		}
		return nil, 0, fmt.Errorf("tracker %s: %w", url, err)
	}
	peers := make([]netip.AddrPort, 0, len(res.Peers))
	for _, p := range res.Peers {
		ip, ok := netip.AddrFromSlice(p.IP)
		if !ok || p.Port <= 0 || p.Port > 65535 {
			continue
		}
		peers = append(peers, netip.AddrPortFrom(ip.Unmap(), uint16(p.Port)))
	}
	return peers, time.Duration(res.Interval) * time.Second, nil
}

// Feed announces to every tracker until ctx ends, calling found for each
// peer (possibly concurrently) and state for the current figures before
// each announce. The interval is the tracker's, clamped to [1 min, 1 h];
// failures back off from 15 s to 30 min. A last "stopped" announce is sent
// on the way out, bounded by a short timeout.
func Feed(ctx context.Context, urls []string, state func() Request, found func(netip.AddrPort), log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			feedOne(ctx, u, state, found, log)
		}()
	}
	wg.Wait()
}

func feedOne(ctx context.Context, url string, state func() Request, found func(netip.AddrPort), log *slog.Logger) {
	ev, backoff, announced := Started, 15*time.Second, false
	for {
		r := state()
		r.Event = ev
		peers, interval, err := Announce(ctx, url, r)
		if ctx.Err() != nil {
			break
		}
		wait := backoff
		if err != nil {
			log.Info("tracker announce failed", "tracker", url, "err", err)
			if errors.Is(err, ErrUnsupported) {
				return
			}
			backoff = min(backoff*2, 30*time.Minute)
		} else {
			announced, ev, backoff = true, None, 15*time.Second
			log.Debug("tracker announce", "tracker", url, "peers", len(peers))
			for _, p := range peers {
				found(p)
			}
			wait = min(max(interval, time.Minute), time.Hour)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			continue
		}
		break
	}
	if announced {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		r := state()
		r.Event = Stopped
		_, _, _ = Announce(sctx, url, r)
	}
}

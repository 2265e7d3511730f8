package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/internal/peersource"
	"github.com/magnetget/magnetget/internal/trackers"
	"github.com/magnetget/magnetget/swarm"
	"github.com/magnetget/magnetget/torrentfile"
)

func seedCommand() *cli.Command {
	return &cli.Command{
		Name:      "seed",
		Usage:     "make a torrent of a file or directory (or use --torrent) and share it over the DHT",
		ArgsUsage: "<file-or-dir>",
		Flags: append(append(append(dhtFlags(), logFlags()...), createFlags()...),
			&cli.PathFlag{Name: "torrent", Usage: "seed this existing .torrent: the data is verified first"},
			&cli.BoolFlag{Name: "print-peer", Usage: "add our listen address to the magnet as x.pe"},
			&cli.StringFlag{Name: "status-addr", Usage: "serve status as JSON at / and Prometheus text at /metrics on this multiaddr"},
			&cli.StringFlag{Name: "upload-limit", EnvVars: []string{"MAGNETGET_UPLOAD_LIMIT"}, Usage: "bytes per second, e.g. 500K (0: unlimited)"},
			&cli.IntFlag{Name: "max-peers", Value: 100, Usage: "most peer connections at once"},
			&cli.DurationFlag{Name: "announce-interval", Value: 15 * time.Minute, Usage: "how often to re-announce to the DHT"},
			&cli.DurationFlag{Name: "status-interval", Value: 10 * time.Second, Usage: "how often to print the upload figures (per peer with --verbose)"},
		),
		Action: seedAction,
	}
}

func seedAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageHint("seed takes one file or directory")
	}
	root, err := filepath.Abs(c.Args().First())
	if err != nil {
		return err
	}
	if _, err := os.Stat(root); err != nil {
		return err
	}
	up, err := parseRate(c.String("upload-limit"))
	if err != nil {
		return usageError("--upload-limit: %v", err)
	}
	var tor *torrentfile.Torrent
	if tf := c.Path("torrent"); tf != "" {
		if c.Bool("v2") || c.Bool("hybrid") {
			return usageError("--v2 and --hybrid make a new torrent; --torrent seeds the one given as it is")
		}
		if tor, err = torrentfile.LoadTorrent(tf); err != nil {
			return err
		}
	} else {
		var path string
		if tor, path, err = makeTorrent(c, root); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "wrote %s\n", esc(path))
	}
	mi := tor.Meta
	// The swarm joins under the v1 infohash, or the truncated v2 one for a
	// v2-only torrent; a hybrid is announced under both.
	hashes := swarmHashesOf(tor)
	ih := hashes[0]
	info, _, err := infoView(mi.InfoBytes)
	if err != nil {
		return fmt.Errorf("torrent: %w", err)
	}
	// The path names the content itself (…/album for a torrent named
	// "album"), or, with --torrent, the directory that holds it.
	dataDir := filepath.Dir(root)
	if filepath.Base(root) != info.BestName() {
		dataDir = root
	}
	log := logger(c)
	ctx := c.Context
	set, ln, err := joinPeerNet(ctx, c, log, false)
	if err != nil {
		return err
	}
	defer set.Close()
	defer ln.Close()
	tcpAddr := ln.bound()
	var hints []string
	if c.Bool("print-peer") {
		var note string
		if hints, note = dialableHints(tcpAddr); note != "" {
			fmt.Fprintln(c.App.ErrWriter, note)
		}
	}
	fmt.Fprintln(c.App.Writer, magnetOf(tor, hints))

	peerID := newPeerID()
	var urls []string
	for _, tier := range mi.UpvertedAnnounceList() {
		urls = append(urls, tier...)
	}
	var (
		mu    sync.Mutex // guards last and meter
		last  swarm.Progress
		meter activeMeter
	)
	state := func() trackers.Request {
		mu.Lock()
		p := last
		mu.Unlock()
		return trackers.Request{Uploaded: p.Up, Left: p.Total - p.Done}
	}
	// One peer source for every swarm hash (a hybrid's two), the seed's
	// own lookups included: a leecher that cannot accept connections is
	// reached only when we dial it. Its announces say what we have from
	// the first one on.
	sched := peersource.Schedule{AnnounceEvery: c.Duration("announce-interval")}
	f := startFinder(ctx, set, peersource.Config{InfoHash: ih, Also: hashes[1:], PeerID: peerID, Port: tcpAddr.Port(),
		Trackers: urls, Schedule: sched, State: state, Logger: log})
	defer f.stop()
	started := time.Now()
	sw, err := swarm.New(swarm.Config{
		InfoHash: ih, Info: mi.InfoBytes, PieceLayers: tor.PieceLayers, Dir: dataDir, PeerID: peerID, Listener: ln, UTP: set.utpDialer(),
		MaxPeers: c.Int("max-peers"), UploadLimit: up, Seed: true, ReadOnly: true, Logger: log, AllowDial: f.src.AllowDial,
		OnProgress: func(p swarm.Progress) {
			mu.Lock()
			last = p
			meter.add(p.Up, time.Now())
			mu.Unlock()
		},
	})
	if err != nil {
		return err
	}
	figures := func() []metric {
		mu.Lock()
		p := last
		mu.Unlock()
		return append(dhtMetrics(set),
			metric{Name: "uploaded_bytes_total", Help: "Bytes uploaded to peers.", Value: float64(p.Up)},
			metric{Name: "upload_rate_bytes_per_second", Help: "Upload rate, bytes per second.", Value: p.RateUp, Gauge: true},
			metric{Name: "peers", Help: "Connected peers.", Value: float64(p.Peers), Gauge: true},
			metric{Name: "verified_bytes", Help: "Bytes verified and available.", Value: float64(p.Done), Gauge: true},
		)
	}
	if a := c.String("status-addr"); a != "" {
		addr, stop, err := serveStatus(ctx, a, figures, log)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(c.App.ErrWriter, "status on http://%s/metrics\n", addr)
	}
	f.src.Attach(sw.AddPeer, connectedPeers(sw))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(c.Duration("status-interval"))
		defer t.Stop()
		var shown swarm.Progress
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				mu.Lock()
				p, upText := last, meter.describe(last.Up)
				mu.Unlock()
				// Quiet while nothing happens: a line only when the figures move.
				if p.Up == shown.Up && p.Peers == shown.Peers && p.Done == shown.Done {
					continue
				}
				shown = p
				fmt.Fprintf(c.App.ErrWriter, "%s seeding: %s verified, uploaded %s, peers %d\n",
					time.Now().Format(time.TimeOnly), humanBytes(p.Done), upText, p.Peers)
				if c.Bool("verbose") {
					for _, ps := range sw.PeerStats() {
						client := ps.Client
						if client == "" {
							client = "-"
						}
						rateText := ""
						if ps.RateUp >= 1 {
							rateText = fmt.Sprintf(" (now %s/s)", humanBytes(int64(ps.RateUp)))
						}
						fmt.Fprintf(c.App.ErrWriter, "  peer %s %s: uploaded %s%s, downloaded %s\n",
							maddr.FromAddrPort(ps.Addr, "tcp"), strconv.Quote(esc(client)), humanBytes(ps.Up), rateText, humanBytes(ps.Down))
					}
				}
			}
		}
	}()
	fmt.Fprintf(c.App.ErrWriter, "seeding %x on %v; Ctrl-C to stop\n", ih, maddr.FromAddrPort(tcpAddr, "tcp"))
	err = sw.Run(rctx)
	cancel()
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		return err
	}
	mu.Lock()
	p, upText := last, meter.describe(last.Up)
	mu.Unlock()
	// Ended by the user (Ctrl-C, SIGTERM): a normal end, not an error.
	fmt.Fprintf(c.App.ErrWriter, "stopped after %s: uploaded %s, peers %d at the end\n", roundDur(time.Since(started)), upText, p.Peers)
	return nil
}

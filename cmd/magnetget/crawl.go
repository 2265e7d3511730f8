package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget/crawl"
	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/metadata"
)

func crawlDBFlag() cli.Flag {
	return &cli.PathFlag{Name: "db", Usage: "the crawl index (default <data-dir>/crawl.db)"}
}

func crawlCommand() *cli.Command {
	return &cli.Command{
		Name:  "crawl",
		Usage: "discover infohashes on the DHT (BEP 51 sampling and passive harvesting) into an index",
		Flags: append(append(dhtFlags(), logFlags()...),
			crawlDBFlag(),
			&cli.Float64Flag{Name: "rate", Value: 100, Usage: "sample_infohashes/find_node queries per second over all nodes"},
			&cli.BoolFlag{Name: "metadata", Usage: "also fetch each new infohash's metadata (name, size, files)"},
			&cli.IntFlag{Name: "metadata-workers", Value: 16, Usage: "parallel metadata fetches with --metadata"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long (0: until interrupted)"},
			&cli.DurationFlag{Name: "progress-interval", Value: 10 * time.Second, Usage: "how often to print progress"},
		),
		Action: crawlAction,
		Subcommands: []*cli.Command{
			{
				Name:  "export",
				Usage: "write the index as JSON lines or CSV",
				Flags: []cli.Flag{
					crawlDBFlag(),
					&cli.PathFlag{Name: "data-dir", Usage: "where crawl.db is kept by default"},
					&cli.StringFlag{Name: "format", Value: "jsonl", Usage: "jsonl or csv"},
					&cli.PathFlag{Name: "output", Aliases: []string{"o"}, Usage: "write here instead of stdout"},
				},
				Action: crawlExportAction,
			},
			{
				Name:  "stats",
				Usage: "summarise the index",
				Flags: []cli.Flag{
					crawlDBFlag(),
					&cli.PathFlag{Name: "data-dir", Usage: "where crawl.db is kept by default"},
				},
				Action: crawlStatsAction,
			},
		},
	}
}

func crawlDBPath(c *cli.Context) (string, error) {
	if p := c.Path("db"); p != "" {
		return p, nil
	}
	dir, err := dataDir(c)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return filepath.Join(dir, "crawl.db"), nil
}

// openIndex opens the crawl index; a corrupt one has been moved aside and
// is reported, and a fresh one is used.
func openIndex(c *cli.Context) (*index.Index, error) {
	path, err := crawlDBPath(c)
	if err != nil {
		return nil, err
	}
	x, err := index.Open(path, index.Options{Logger: logger(c)})
	if x == nil {
		return nil, err
	}
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: %v\n", err)
	}
	return x, nil
}

// harvestHooks returns dht hooks that record what other nodes ask and
// announce into the crawler's index.
func harvestHooks(cr *crawl.Crawler) dht.Config {
	return dht.Config{
		OnAnnounce: func(ih [20]byte, p netip.AddrPort) { cr.Harvest(ih, p, crawl.Announce) },
		// The get_peers querier is a node, not a peer holding the torrent.
		OnGetPeers: func(ih [20]byte, _ netip.AddrPort) { cr.Harvest(ih, netip.AddrPort{}, crawl.GetPeers) },
	}
}

func crawlAction(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageError("crawl takes no arguments (did you mean 'crawl export' or 'crawl stats'?)")
	}
	log := logger(c)
	ctx := c.Context
	if d := c.Duration("duration"); d > 0 {
		var cancel func()
		ctx, cancel = contextWithTimeout(ctx, d)
		defer cancel()
	}
	x, err := openIndex(c)
	if err != nil {
		return err
	}
	defer x.Close()
	cr := &crawl.Crawler{Index: x, Rate: c.Float64("rate"), Logger: log, ProgressInterval: c.Duration("progress-interval")}
	set, err := joinDHT(ctx, c, log, harvestHooks(cr), false)
	if err != nil {
		return err
	}
	defer set.Close()
	// The walk runs on the first (IPv4) node; the others still harvest.
	cr.Node = set.nodes[0]
	cr.Seeds = set.seeds()
	if c.Bool("metadata") {
		cr.MetadataWorkers = c.Int("metadata-workers")
		cr.Fetch = crawl.MetadataFetcher(metadata.Options{PeerID: newPeerID(), Logger: log})
	}
	start := time.Now()
	cr.OnProgress = func(p crawl.Progress) {
		fmt.Fprintf(c.App.ErrWriter, "%s %s\n", time.Now().Format(time.TimeOnly), formatProgress(p, time.Since(start)))
	}
	fmt.Fprintf(c.App.ErrWriter, "crawling from %v into %s; Ctrl-C to stop\n", set.udpMultiaddrs(), x.Path())
	if err := cr.Run(ctx); err != nil && !errors.Is(err, ctx.Err()) {
		return err
	}
	st, err := x.Stats()
	if err == nil {
		fmt.Fprintf(c.App.ErrWriter, "index holds %d infohashes (%d with metadata)\n", st.Infohashes, st.WithMetadata)
	}
	return nil
}

func crawlExportAction(c *cli.Context) error {
	x, err := openIndex(c)
	if err != nil {
		return err
	}
	defer x.Close()
	w := c.App.Writer
	if o := c.Path("output"); o != "" && o != "-" {
		f, err := os.Create(o)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	switch c.String("format") {
	case "jsonl", "json":
		return x.ExportJSONL(w)
	case "csv":
		return x.ExportCSV(w)
	default:
		return usageError("--format: %q is not jsonl or csv", c.String("format"))
	}
}

func crawlStatsAction(c *cli.Context) error {
	x, err := openIndex(c)
	if err != nil {
		return err
	}
	defer x.Close()
	st, err := x.Stats()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "index:            %s\n%s", x.Path(), formatStats(st))
	return nil
}

func formatProgress(p crawl.Progress, _ time.Duration) string {
	return fmt.Sprintf("found %d infohashes (%.0f/min), %d sightings, metadata %d fetched %d failed, nodes visited %d known %d, queries %d",
		p.Found, p.PerMinute, p.Seen, p.MetadataFetched, p.MetadataFailed, p.NodesVisited, p.NodesKnown, p.Queries)
}

func formatStats(st index.Stats) string {
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.RFC3339)
	}
	return fmt.Sprintf("infohashes:       %d\nwith metadata:    %d\nmetadata failed:  %d\nseen by sampling: %d\nseen in get_peers: %d\nseen announced:   %d\nfirst seen:       %s\nlast seen:        %s\n",
		st.Infohashes, st.WithMetadata, st.Failed, st.Sampled, st.GetPeers, st.Announced, when(st.FirstSeen), when(st.LastSeen))
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

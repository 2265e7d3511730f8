package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget/crawl"
	"github.com/magnetget/magnetget/crawl/index"
	"github.com/magnetget/magnetget/crawl/index/pgindex"
	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/metadata"
)

func crawlDBFlag() cli.Flag {
	return &cli.StringFlag{Name: "db", Usage: "the crawl index: a bbolt file path (default <data-dir>/crawl.db) or a postgres:// URL shared by many crawlers"}
}

func crawlCommand() *cli.Command {
	return &cli.Command{
		Name:  "crawl",
		Usage: "discover infohashes on the DHT (BEP 51 sampling and passive harvesting) into an index",
		Flags: append(append(dhtFlags(), logFlags()...),
			crawlDBFlag(),
			&cli.DurationFlag{Name: "peer-retention", Value: index.DefaultPeerRetention, Usage: "forget announced peers not seen for this long (pruned in small batches; 0 keeps them)"},
			&cli.Float64Flag{Name: "rate", Value: 100, Usage: "sample_infohashes/find_node queries per second over all nodes"},
			&cli.BoolFlag{Name: "metadata", Usage: "also fetch each new infohash's metadata (name, size, files)"},
			&cli.IntFlag{Name: "metadata-workers", Value: 16, Usage: "parallel metadata fetches with --metadata"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long (0: until interrupted)"},
			&cli.DurationFlag{Name: "progress-interval", Value: 10 * time.Second, Usage: "how often to print progress"},
			&cli.StringFlag{Name: "status-addr", Usage: "serve crawl figures as JSON at / and Prometheus text at /metrics on this multiaddr, e.g. /ip4/127.0.0.1/tcp/9091"},
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
			{
				Name:      "search",
				Usage:     "find torrents by words of their name or file paths",
				ArgsUsage: "QUERY",
				Flags: []cli.Flag{
					crawlDBFlag(),
					&cli.PathFlag{Name: "data-dir", Usage: "where crawl.db is kept by default"},
					&cli.IntFlag{Name: "limit", Value: 20, Usage: "at most this many results, most seen first"},
					&cli.BoolFlag{Name: "json", Usage: "one JSON object per line"},
				},
				Action: crawlSearchAction,
			},
		},
	}
}

func crawlDBPath(c *cli.Context) (string, error) {
	if p := c.String("db"); p != "" {
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

// openIndex opens the crawl index: PostgreSQL for a postgres:// --db,
// else the bbolt file. A corrupt bbolt file has been moved aside and is
// reported, and a fresh one is used.
func openIndex(c *cli.Context) (index.Store, error) {
	if db := c.String("db"); index.IsURL(db) {
		ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
		defer cancel()
		return pgindex.Open(ctx, db, pgindex.Options{Logger: logger(c), PeerRetention: peerRetention(c)})
	}
	path, err := crawlDBPath(c)
	if err != nil {
		return nil, err
	}
	x, err := index.Open(path, index.Options{Logger: logger(c), PeerRetention: peerRetention(c)})
	if x == nil {
		return nil, err
	}
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: %v\n", err)
	}
	return x, nil
}

// peerRetention is --peer-retention as the index options take it: 0 (keep) is negative there,
// and commands without the flag get the default.
func peerRetention(c *cli.Context) time.Duration {
	if !c.IsSet("peer-retention") {
		return 0
	}
	if d := c.Duration("peer-retention"); d > 0 {
		return d
	}
	return -1
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
	if a := c.String("status-addr"); a != "" {
		addr, stop, err := serveStatus(ctx, a, crawlMetrics(cr), log)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(c.App.ErrWriter, "status on http://%s/metrics\n", addr)
	}
	fmt.Fprintf(c.App.ErrWriter, "crawling from %v into %s; Ctrl-C to stop\n", set.udpMultiaddrs(), x)
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
		return index.ExportJSONL(w, x)
	case "csv":
		return index.ExportCSV(w, x)
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
	fmt.Fprintf(c.App.Writer, "index:            %s\n%s", x, formatStats(st))
	return nil
}

func formatProgress(p crawl.Progress, _ time.Duration) string {
	s := fmt.Sprintf("found %d infohashes (%.0f/min), %d sightings, metadata %d fetched %d failed %d active, nodes visited %d known %d, queries %d",
		p.Found, p.PerMinute, p.Seen, p.MetadataFetched, p.MetadataFailed, p.MetadataActive, p.NodesVisited, p.NodesKnown, p.Queries)
	if p.Share[1] > 1 {
		s += fmt.Sprintf(", keyspace share %d/%d", p.Share[0]+1, p.Share[1])
	}
	if p.DB.Retrying {
		s += fmt.Sprintf(", DATABASE UNREACHABLE: %d infohashes buffered, retrying (%s)", p.DB.Pending, p.DB.LastError)
	}
	if p.DB.Dropped > 0 {
		s += fmt.Sprintf(", %d sightings dropped (buffer full)", p.DB.Dropped)
	}
	return s
}

// crawlMetrics returns the figures `crawl --status-addr` serves. Rates are
// over the time since the previous scrape.
func crawlMetrics(cr *crawl.Crawler) func() []metric {
	var mu sync.Mutex // guards the previous scrape
	var lastAt time.Time
	var lastQ int64
	return func() []metric {
		p := cr.Progress()
		mu.Lock()
		now := time.Now()
		qps := 0.0
		if !lastAt.IsZero() && now.Sub(lastAt) > 0 {
			qps = float64(p.Queries-lastQ) / now.Sub(lastAt).Seconds()
		} else if p.Elapsed > 0 {
			qps = float64(p.Queries) / p.Elapsed.Seconds()
		}
		lastAt, lastQ = now, p.Queries
		mu.Unlock()
		b2f := func(b bool) float64 {
			if b {
				return 1
			}
			return 0
		}
		return []metric{
			{Name: "crawl_found_total", Help: "Infohashes this crawler recorded first.", Value: float64(p.Found)},
			{Name: "crawl_found_per_minute", Help: "Infohashes found per minute of crawling.", Value: p.PerMinute, Gauge: true},
			{Name: "crawl_sightings_total", Help: "Sightings (samples and harvested), repeats included.", Value: float64(p.Seen)},
			{Name: "crawl_metadata_fetched_total", Help: "Info dictionaries fetched and stored.", Value: float64(p.MetadataFetched)},
			{Name: "crawl_metadata_failed_total", Help: "Metadata fetches that failed.", Value: float64(p.MetadataFailed)},
			{Name: "crawl_metadata_queued", Help: "Metadata fetches leased from the index's queue and in progress.", Value: float64(p.MetadataActive), Gauge: true},
			{Name: "crawl_queries_total", Help: "sample_infohashes and find_node queries sent.", Value: float64(p.Queries)},
			{Name: "crawl_queries_per_second", Help: "Queries sent per second since the previous scrape.", Value: qps, Gauge: true},
			{Name: "crawl_nodes_visited_total", Help: "Replies to our walk queries.", Value: float64(p.NodesVisited)},
			{Name: "crawl_nodes_known", Help: "Nodes the walk knows.", Value: float64(p.NodesKnown), Gauge: true},
			{Name: "crawl_db_write_latency_seconds", Help: "Duration of the last committed index batch.", Value: p.DB.WriteLatency.Seconds(), Gauge: true},
			{Name: "crawl_db_buffer_depth", Help: "Infohashes buffered, not yet written to the index.", Value: float64(p.DB.Pending), Gauge: true},
			{Name: "crawl_db_dropped_total", Help: "Sightings dropped because the buffer was full.", Value: float64(p.DB.Dropped)},
			{Name: "crawl_db_retrying", Help: "1 while index writes fail and are retried.", Value: b2f(p.DB.Retrying), Gauge: true},
			{Name: "crawl_db_commits_total", Help: "Index batches committed.", Value: float64(p.DB.Commits)},
			{Name: "crawl_share_count", Help: "Live crawlers sharing the index (0: not shared).", Value: float64(p.Share[1]), Gauge: true},
		}
	}
}

func crawlSearchAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("crawl search needs a QUERY")
	}
	query := strings.Join(c.Args().Slice(), " ")
	if len(index.Words(query)) == 0 {
		return usageError("crawl search: %q has no words to search for", query)
	}
	x, err := openIndex(c)
	if err != nil {
		return err
	}
	defer x.Close()
	res, err := x.Search(c.Context, query, max(c.Int("limit"), 1))
	if errors.Is(err, index.ErrSearchScan) {
		fmt.Fprintf(c.App.ErrWriter, "note: %v\n", err)
		err = nil
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetEscapeHTML(false)
		for _, e := range res {
			if err := enc.Encode(searchJSON(e)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, e := range res {
		fmt.Fprintf(c.App.Writer, "%s  %9s  %5d files  seen %d  %s\n  %s\n",
			hex.EncodeToString(e.InfoHash[:]), humanSize(e.Size), len(e.Files), e.Seen, termSafe(e.Name), e.Magnet())
	}
	if len(res) == 0 {
		fmt.Fprintln(c.App.ErrWriter, "no match")
	}
	return nil
}

type searchResult struct {
	InfoHash  string    `json:"infohash"`
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	Files     int       `json:"files"`
	Seen      int64     `json:"seen"`
	SeenBy    []string  `json:"seen_by"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Magnet    string    `json:"magnet"`
}

func searchJSON(e index.Entry) searchResult {
	r := searchResult{InfoHash: hex.EncodeToString(e.InfoHash[:]), Name: e.Name, Size: e.Size, Files: len(e.Files), Seen: e.Seen,
		SeenBy: []string{}, FirstSeen: e.FirstSeen, LastSeen: e.LastSeen, Magnet: e.Magnet()}
	if s := e.How.String(); s != "" {
		r.SeenBy = strings.Split(s, "|")
	}
	return r
}

// termSafe quotes a name from the network that holds anything a terminal
// would act on (control characters, escapes); JSON output keeps it as is.
func termSafe(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i-1])
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

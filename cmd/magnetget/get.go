package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/internal/peersource"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/internal/torrenturl"
	"github.com/magnetget/magnetget/internal/trackers"
	"github.com/magnetget/magnetget/internal/utp"
	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/swarm"
	"github.com/magnetget/magnetget/swarm/storage"
	"github.com/magnetget/magnetget/torrentfile"
)

func getFlags() []cli.Flag {
	return append(append(dhtFlags(), logFlags()...),
		&cli.PathFlag{Name: "output", Aliases: []string{"o"}, Value: ".", EnvVars: []string{"MAGNETGET_OUTPUT_DIR"}, Usage: "download into this directory"},
		&cli.StringFlag{Name: "select", Usage: "only these files: indexes (0,2,4-6) or globs (*.mkv), comma-separated"},
		&cli.BoolFlag{Name: "sequential", Usage: "fetch pieces in order (for streaming)"},
		&cli.BoolFlag{Name: "seed", Usage: "keep seeding after the download completes"},
		&cli.Float64Flag{Name: "seed-ratio", Usage: "with --seed: stop at this upload/download ratio (0: no limit)"},
		&cli.DurationFlag{Name: "seed-time", Usage: "with --seed: stop after seeding this long (0: no limit)"},
		&cli.IntFlag{Name: "max-peers", Value: 50, EnvVars: []string{"MAGNETGET_MAX_PEERS"}, Usage: "most peer connections at once"},
		&cli.StringFlag{Name: "download-limit", EnvVars: []string{"MAGNETGET_DOWNLOAD_LIMIT"}, Usage: "bytes per second, e.g. 2M (0: unlimited)"},
		&cli.StringFlag{Name: "upload-limit", EnvVars: []string{"MAGNETGET_UPLOAD_LIMIT"}, Usage: "bytes per second, e.g. 500K (0: unlimited)"},
		&cli.BoolFlag{Name: "json", Usage: "NDJSON progress events on stdout"},
		&cli.IntFlag{Name: "max-metadata-size", Value: 16 << 20, Usage: "refuse info dicts larger than this many bytes"},
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite files in the way that this download did not write"},
		&cli.DurationFlag{Name: "timeout", Usage: "give up when no metadata arrives, or no data is verified, for this long (0: keep trying)"},
		&cli.BoolFlag{Name: "no-web-seeds", Usage: "ignore the web seeds (BEP 19) of the .torrent's url-list and the magnet's ws="},
	)
}

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "download a magnet link or .torrent file (the default command)",
		ArgsUsage: "<magnet-uri | infohash | file.torrent | URL of a .torrent>",
		Flags:     getFlags(),
		Action:    getAction,
	}
}

// parseRate reads "2M", "500K", "1048576" as bytes per second.
func parseRate(s string) (int64, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I"))
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'K':
		mult = 1 << 10
	case 'M':
		mult = 1 << 20
	case 'G':
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad rate %q", s)
	}
	return int64(v * float64(mult)), nil
}

// target is what a download starts from: a .torrent's info or a magnet's
// infohash (and then the metadata comes from peers).
type target struct {
	ih       [20]byte            // the hash the swarm joins under: v1, or the truncated v2 for a v2-only torrent or btmh magnet
	v2       [32]byte            // the full v2 infohash the info dict must hash to; zero when not given
	alt      [][20]byte          // a hybrid's other swarm hash: peers are looked up, and we announce, under it too
	info     []byte              // nil until known
	layers   map[[32]byte][]byte // a v2 .torrent's piece layers
	trackers []string
	peers    []string
	webSeeds []string // BEP 19: the .torrent's url-list, the magnet's ws=
	sources  []string // the magnet's xs=: URLs of the .torrent, tried beside the peers for the metadata
	selected []magnet.Range
}

// loadTarget reads what the user named: a .torrent file, the URL of one (downloaded now, at
// most maxSize*2 + 1 MiB), a magnet or an infohash.
func loadTarget(ctx context.Context, arg string, maxSize int) (*target, error) {
	if torrenturl.IsURL(arg) {
		data, err := torrenturl.Get(ctx, arg, 2*maxSize+1<<20)
		if err != nil {
			return nil, err
		}
		tor, err := torrentfile.ParseTorrent(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", torrenturl.Redact(arg), err)
		}
		return torrentTarget(tor), nil
	}
	if !strings.HasPrefix(strings.ToLower(arg), "magnet:") {
		if st, err := os.Stat(arg); err == nil && !st.IsDir() {
			tor, err := torrentfile.LoadTorrent(arg)
			if err != nil {
				return nil, err
			}
			return torrentTarget(tor), nil
		}
	}
	m, err := parseTarget(arg)
	if err != nil {
		// Looks like a path: say what is wrong with the file, not the magnet.
		if strings.HasSuffix(strings.ToLower(arg), ".torrent") || strings.ContainsRune(arg, os.PathSeparator) {
			if st, serr := os.Stat(arg); serr != nil {
				return nil, fmt.Errorf("%w (and it is not a magnet URI or infohash)", serr)
			} else if st.IsDir() {
				return nil, fmt.Errorf("%s is a directory, not a .torrent file or magnet URI (to share it: magnetget seed %s)", arg, arg)
			}
		}
		return nil, err
	}
	t := &target{ih: m.InfoHash, trackers: m.Trackers, peers: m.Peers, webSeeds: m.WebSeeds, sources: m.Sources, selected: m.Select}
	if m.HasV2 {
		// Under the truncated v2 hash: the peers that give the metadata then
		// also answer hash requests (piece layers), and a v2-only torrent has
		// no other swarm.
		hs := m.SwarmHashes()
		t.ih, t.v2, t.alt = hs[len(hs)-1], m.InfoHashV2, hs[:len(hs)-1]
	}
	return t, nil
}

// torrentTarget is the target a .torrent describes.
func torrentTarget(tor *torrentfile.Torrent) *target {
	mi := tor.Meta
	// Under the truncated v2 hash whenever there is one, as for a btmh magnet: a
	// hybrid's download keeps one resume state whichever way it was started, and
	// its peers answer hash requests.
	hs := swarmHashesOf(tor)
	slices.Reverse(hs)
	t := &target{ih: hs[0], alt: hs[1:], info: mi.InfoBytes, layers: tor.PieceLayers, webSeeds: mi.UrlList}
	for _, tier := range mi.UpvertedAnnounceList() {
		t.trackers = append(t.trackers, tier...)
	}
	return t
}

// selector builds the file filter from --select and the magnet's so=.
func selector(spec string, so []magnet.Range, info *metainfo.Info) (func(int) bool, error) {
	files := info.UpvertedFiles()
	if spec == "" && len(so) == 0 {
		return nil, nil
	}
	sel := make([]bool, len(files))
	for _, r := range so {
		for i := r.First; i <= r.Last && i < len(files); i++ {
			sel[i] = true
		}
	}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if lo, hi, ok := strings.Cut(part, "-"); ok {
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil {
				if a > b || a < 0 {
					return nil, fmt.Errorf("--select: bad range %q", part)
				}
				for i := a; i <= b && i < len(files); i++ {
					sel[i] = true
				}
				continue
			}
		}
		if i, err := strconv.Atoi(part); err == nil {
			if i < 0 || i >= len(files) {
				return nil, fmt.Errorf("--select: no file %d (the torrent has %d, numbered from 0; meta --print lists them)", i, len(files))
			}
			sel[i] = true
			continue
		}
		matched := false
		for i, f := range files {
			p := strings.Join(f.BestPath(), "/")
			if len(info.Files) == 0 {
				p = info.BestName()
			}
			full, _ := path.Match(part, p)
			base, _ := path.Match(part, path.Base(p))
			if full || base {
				sel[i], matched = true, true
			}
		}
		if !matched {
			if _, err := path.Match(part, ""); err != nil {
				return nil, fmt.Errorf("--select: bad pattern %q: %w", part, err)
			}
			return nil, fmt.Errorf("--select: no file matches %q", part)
		}
	}
	return func(i int) bool { return i >= 0 && i < len(sel) && sel[i] }, nil
}

// joinPeerNet joins the DHT (optional: peers may come from x.pe and
// trackers) and opens the peer listener on the --listen TCP address. A
// download that ends when complete joins read-only (BEP 43); a seed answers
// queries.
func joinPeerNet(ctx context.Context, c *cli.Context, log *slog.Logger, readOnly bool) (*dhtSet, *peerListener, error) {
	set, ln, err := joinPeerDHT(ctx, c, log, dht.Config{ReadOnly: readOnly})
	if err != nil {
		return nil, nil, err
	}
	// Peers reach us over uTP on the DHT's UDP port, which is the TCP
	// listener's port number (joinPeerDHT binds them together).
	merged, err := utp.NewListener(ln.Listener, set.socks...)
	if err != nil {
		ln.Close()
		set.Close()
		return nil, nil, err
	}
	ln.Listener = merged
	return set, ln, nil
}

// peerListener is the peer listener with the address it was asked to bind:
// Go binds "0.0.0.0" dual-stack and reports it as [::], so the family a
// user asked for is kept here for the x.pe hints.
type peerListener struct {
	net.Listener
	want netip.AddrPort
}

// localIP is the address our dials and announces leave from: the listen
// address, or zero (the system chooses) when it is unspecified.
func (l *peerListener) localIP() netip.Addr {
	if a := l.want.Addr(); !a.IsUnspecified() {
		return a.Unmap()
	}
	return netip.Addr{}
}

// bound is the address the listener serves, in the family asked for.
func (l *peerListener) bound() netip.AddrPort {
	return netip.AddrPortFrom(l.want.Addr(), uint16(l.Addr().(*net.TCPAddr).Port))
}

func getAction(c *cli.Context) (err error) {
	ctx := c.Context
	ev := newEvents(c.App.Writer, c.App.ErrWriter, c.Bool("json"))
	// Every way out, usage errors and failures included, ends the --json
	// stream with "done".
	defer func() { ev.done(err) }()
	if c.NArg() != 1 {
		if c.NArg() == 0 {
			return usageHint("give a magnet URI, infohash or .torrent file to download")
		}
		return usageHint("give one magnet URI, infohash or .torrent file (for several, run magnetget once each, or meta --from FILE)")
	}
	if err := checkGetFlags(c); err != nil {
		return err
	}
	t, err := loadTarget(ctx, c.Args().First(), c.Int("max-metadata-size"))
	if err != nil {
		if torrenturl.IsURL(c.Args().First()) {
			return err // the server's failure, not the user's
		}
		return usageError("%s", userMessage(err))
	}
	down, err := parseRate(c.String("download-limit"))
	if err != nil {
		return usageError("--download-limit: %v", err)
	}
	up, err := parseRate(c.String("upload-limit"))
	if err != nil {
		return usageError("--upload-limit: %v", err)
	}
	log := loggerTo(c, ev)
	if ev.tty && !ev.json {
		stop := onResize(ev.redraw)
		defer stop()
	}
	// --timeout bounds the wait for metadata and, later, any stretch
	// without a byte of progress. 0: keep trying, as other clients do.
	timeout := c.Duration("timeout")
	set, ln, err := joinPeerNet(ctx, c, log, !c.Bool("seed"))
	if err != nil {
		return err
	}
	defer set.Close()
	defer ln.Close()
	port := ln.bound().Port()
	webSeeds := t.webSeeds
	if c.Bool("no-web-seeds") {
		webSeeds = nil
	}
	peerID := newPeerID()
	out := c.Path("output")

	// A download into out keeps its info dict beside its resume state: a
	// rerun never asks peers for metadata again, and --seed on a finished
	// copy works offline. A damaged copy is only a warning: fetch again.
	if t.info == nil {
		switch info, err := storage.LoadInfo(out, t.ih); {
		case err == nil:
			t.info = info
			log.Info("metadata from the earlier download", "dir", out)
		case errors.Is(err, storage.ErrDamaged):
			log.Warn("ignoring the kept metadata; fetching it again", "err", err)
		}
	}

	direct := resolvePeers(ctx, t.peers, log)
	// One peer source for the torrent, from the metadata fetch to the end of
	// the download or seed, under every swarm hash (a hybrid's two: their
	// peers serve the metadata and the download, dialled under t.ih): the
	// peers that served the metadata go on to the swarm on the same
	// connections, and no address is dialled twice.
	f := startFinder(ctx, set, peersource.Config{InfoHash: t.ih, Also: t.alt, PeerID: peerID, Port: port,
		Direct: direct, Trackers: t.trackers, Logger: log})
	defer f.stop()
	var conns []*peerwire.Conn
	if t.info == nil {
		ihs := hex.EncodeToString(t.ih[:])
		ev.event("metadata", map[string]any{"infohash": ihs})
		mctx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			mctx, cancel = context.WithTimeout(ctx, timeout)
		}
		stopStatus := ticker(mctx, time.Second, func() {
			st := f.src.Stats()
			ev.status(fmt.Sprintf("looking for metadata: %s (%s)", f.tried(), time.Since(ev.start).Round(time.Second)),
				map[string]any{"dht_nodes": set.Stats().Nodes, "peers_found": st.Found, "trackers_answered": st.TrackersAnswered, "trackers": st.Trackers})
		})
		fctx, fcancel := context.WithCancel(mctx)
		// Peers that connect to us meanwhile (our DHT announce or a tracker
		// told them where we are: a seed that dials its leechers) are asked
		// for the metadata too, and go on to the swarm like dialled ones.
		early := acceptEarly(fctx, ln, t, peerID, log)
		r, err := metadata.Fetch(fctx, t.ih, f.src.Peers(fctx),
			metadata.Options{MaxSize: c.Int("max-metadata-size"), PeerID: peerID, Logger: log, LocalAddr: ln.localIP(), InfoHashV2: t.v2,
				Incoming: early.conns(), Sources: t.sources, UTP: set.utpDialer()})
		fcancel()
		left := early.stop()
		stopStatus()
		tried := f.tried()
		cancel()
		if err != nil {
			closeAll(left)
			switch {
			case ctx.Err() != nil:
				return cli.Exit("interrupted while looking for metadata ("+tried+")", 130)
			case mctx.Err() != nil:
				return fmt.Errorf("no metadata for %s within %v: %s", ihs, timeout, tried)
			}
			return fmt.Errorf("no metadata for %s: %w (%s)", ihs, err, tried)
		}
		// The connections that gave the metadata speak r.Hashes.SwarmHash():
		// the swarm joins under it and keeps them.
		t.info, conns, t.ih = r.Info, append(r.Conns, left...), r.Hashes.SwarmHash()
		if r.Torrent != nil { // from the .torrent an xs= named: its piece layers and web seeds
			t.layers = r.Torrent.PieceLayers
			if !c.Bool("no-web-seeds") {
				for _, u := range r.Torrent.Meta.UrlList {
					if !slices.Contains(webSeeds, u) {
						webSeeds = append(webSeeds, u)
					}
				}
			}
		}
		if r.Hashes.Hybrid() {
			// A btih magnet of a hybrid: its peers are found under both hashes.
			f.src.AddInfoHash(r.Hashes.V1)
			f.src.AddInfoHash(r.Hashes.TruncatedV2())
		}
	}
	info, tor, err := infoView(t.info)
	if err != nil {
		closeAll(conns)
		return err
	}
	sel, err := selector(c.String("select"), t.selected, info)
	if err != nil {
		closeAll(conns)
		return usageError("%v", err)
	}
	ev.event("start", map[string]any{"name": info.BestName(), "size": info.TotalLength(), "pieces": numPieces(info, tor), "dir": out})
	var (
		swp         atomic.Pointer[swarm.Swarm]
		wasComplete atomic.Bool
	)
	src := f.src
	sw, err := swarm.New(swarm.Config{
		InfoHash: t.ih, Info: t.info, Dir: out, Select: sel, Sequential: c.Bool("sequential"),
		PeerID: peerID, Listener: ln, UTP: set.utpDialer(), MaxPeers: c.Int("max-peers"), DownloadLimit: down, UploadLimit: up,
		Seed: c.Bool("seed"), SeedRatio: c.Float64("seed-ratio"), SeedTime: c.Duration("seed-time"),
		Force: c.Bool("force"), Logger: log, AllowDial: src.AllowDial, WebSeeds: webSeeds, PieceLayers: t.layers,
		OnProgress: func(p swarm.Progress) {
			// Called outside the swarm's lock, so asking it for figures is safe.
			if s := swp.Load(); s != nil {
				ev.peerStats(s.PeerStats())
			}
			ev.progress(p)
			if p.Complete && !wasComplete.Swap(true) {
				src.Update() // trackers hear "completed"
			}
		},
	})
	if err != nil {
		closeAll(conns)
		return err
	}
	swp.Store(sw)
	for _, pc := range conns {
		sw.AddConn(pc)
	}
	total := info.TotalLength()
	state := func() trackers.Request {
		p := ev.last()
		left := p.Total - p.Done
		if p.Total == 0 { // no progress yet
			left = total
		}
		return trackers.Request{Uploaded: p.Up, Downloaded: p.Down, Left: left}
	}
	src.SetState(state)
	src.Attach(sw.AddPeer, connectedPeers(sw))
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	if timeout > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stallWatch(rctx, timeout, ev, cancel)
		}()
	}
	err = sw.Run(rctx)
	stall := context.Cause(rctx)
	cancel(nil)
	wg.Wait()
	if err == nil {
		// Trackers told we were downloading hear "completed" before the
		// "stopped" of our exit (bounded: a slow tracker does not hold us).
		actx, acancel := context.WithTimeout(ctx, completedWait)
		src.AwaitCompleted(actx)
		acancel()
		if tor.V1 != nil { // v2 pieces never span files
			ev.partial(partialFiles(info, sel))
		}
		// The resume file stays on purpose: it holds which pieces are
		// verified (and, with the storage work, the info dict), so a rerun,
		// another --select or --seed starts at once, offline, without
		// rehashing or refetching. Deleting it only costs that.
		log.Info("kept the resume state for reruns and --seed", "file", filepath.Join(out, storage.ResumeName(t.ih)))
	}
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			if ev.last().Complete {
				// Seeding ended by the user: the download is whole.
				ev.stoppedSeeding()
				return nil
			}
			return cli.Exit("interrupted; run the same command again to resume", 130)
		}
		if errors.Is(stall, errStalled) {
			p := ev.last()
			return fmt.Errorf("no progress for %v (%s of %s verified, %d peers connected); run the same command again to resume", timeout, humanBytes(p.Done), humanBytes(p.Total), p.Peers)
		}
		return err
	}
	return nil
}

var errStalled = errors.New("stalled")

// completedWait bounds the wait for trackers' answers to "completed" when
// the download ends.
const completedWait = 3 * time.Second

// early is the metadata phase's accepting (peersource.AcceptEarly), or
// nothing when the listener cannot stop accepting without being closed.
type early struct{ e *peersource.Early }

// acceptEarly accepts, until stop, the peers that connect to ln for one of
// t's swarm hashes, bounded as the swarm bounds its own accepting; their
// connections carry our metadata handshake, as metadata.Fetch's dials do.
func acceptEarly(ctx context.Context, ln *peerListener, t *target, peerID [20]byte, log *slog.Logger) early {
	o := peerwire.Options{PeerID: peerID, ExtHandshake: metadata.LocalExtHandshake(0),
		V2: t.v2 != [32]byte{} && [20]byte(t.v2[:20]) == t.ih}
	e, err := peersource.AcceptEarly(ctx, peersource.AcceptConfig{Listener: ln.Listener,
		Hashes: append([][20]byte{t.ih}, t.alt...), Options: o, Logger: log})
	if err != nil {
		log.Debug("not accepting peers before the download starts", "err", err)
	}
	return early{e}
}

func (e early) conns() <-chan *peerwire.Conn {
	if e.e == nil {
		return nil
	}
	return e.e.Conns()
}

// stop ends the accepting; it returns the connections nobody took yet.
func (e early) stop() []*peerwire.Conn {
	if e.e == nil {
		return nil
	}
	return e.e.Stop()
}

// stallWatch cancels the download with errStalled when no byte has been
// verified for d and the download is not complete.
func stallWatch(ctx context.Context, d time.Duration, ev *events, cancel context.CancelCauseFunc) {
	last, since := int64(-1), time.Now()
	t := time.NewTicker(min(d/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p := ev.last()
			if p.Complete {
				return
			}
			if p.Done != last {
				last, since = p.Done, now
			} else if now.Sub(since) >= d {
				cancel(errStalled)
				return
			}
		}
	}
}

// ticker calls fn every d until ctx ends or stop is called; stop waits for it.
func ticker(ctx context.Context, d time.Duration, fn func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { cancel(); <-done }
}

// checkGetFlags refuses flag combinations that would be ignored silently.
func checkGetFlags(c *cli.Context) error {
	if !c.Bool("seed") {
		for _, f := range []string{"seed-ratio", "seed-time"} {
			if c.IsSet(f) {
				return usageError("--%s applies only with --seed", f)
			}
		}
	}
	return nil
}

func metainfoUnmarshal(b []byte, info *metainfo.Info) error {
	_, parsed, err := torrentfile.FromInfoParsed(b, nil)
	if err != nil {
		return err
	}
	*info = *parsed
	return nil
}

func closeAll(cs []*peerwire.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

// partialFile is a file left out by --select that still receives bytes:
// pieces straddle file boundaries, and a piece shared with a selected file
// is downloaded, verified and written whole.
type partialFile struct {
	Index int    `json:"index"`
	Path  string `json:"path"`
	Have  int64  `json:"have"`
	Size  int64  `json:"size"`
}

// partialFiles lists the unselected files that the selected files' edge
// pieces write into, with how many of their bytes those pieces hold.
func partialFiles(info *metainfo.Info, sel func(int) bool) []partialFile {
	if sel == nil || info.PieceLength <= 0 {
		return nil
	}
	files := info.UpvertedFiles()
	type span struct{ off, end int64 }
	spans := make([]span, len(files))
	var off int64
	for i, f := range files {
		spans[i] = span{off, off + f.Length}
		off += f.Length
	}
	// Pieces fetched: every piece that touches a selected file.
	fetched := map[int64]bool{}
	for i, s := range spans {
		if !sel(i) || s.end == s.off {
			continue
		}
		for p := s.off / info.PieceLength; p <= (s.end-1)/info.PieceLength; p++ {
			fetched[p] = true
		}
	}
	var out []partialFile
	for i, s := range spans {
		if sel(i) || s.end == s.off {
			continue
		}
		var have int64
		for p := s.off / info.PieceLength; p <= (s.end-1)/info.PieceLength; p++ {
			if fetched[p] {
				lo, hi := max(s.off, p*info.PieceLength), min(s.end, (p+1)*info.PieceLength)
				have += hi - lo
			}
		}
		if have > 0 && have < s.end-s.off {
			p := info.BestName()
			if len(info.Files) > 0 {
				p = strings.Join(files[i].BestPath(), "/")
			}
			out = append(out, partialFile{Index: i, Path: p, Have: have, Size: s.end - s.off})
		}
	}
	return out
}

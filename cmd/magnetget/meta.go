package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget/internal/peersource"
	"github.com/magnetget/magnetget/internal/peerwire"
	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/metadata"
	"github.com/magnetget/magnetget/torrentfile"
)

func metaCommand() *cli.Command {
	return &cli.Command{
		Name:      "meta",
		Usage:     "fetch a torrent's metadata from peers and write a .torrent",
		ArgsUsage: "<magnet-uri | infohash>...",
		Flags: append(append(dhtFlags(), logFlags()...),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output file (- for stdout); with several targets a template with {name} and {infohash} (default {name}.torrent)"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite an existing file"},
			&cli.StringFlag{Name: "from", Usage: "read magnets or infohashes from this file, one a line (- for stdin)"},
			&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: 32, Usage: "how many metadata fetches run at once"},
			&cli.BoolFlag{Name: "print", Aliases: []string{"p"}, Usage: "also show name, size, piece length and files"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON result line per target"},
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "give up on a target after this long"},
			&cli.IntFlag{Name: "max-metadata-size", Value: 16 << 20, Usage: "refuse info dicts larger than this many bytes"},
		),
		Action: metaAction,
	}
}

type metaFile struct {
	Index  int    `json:"index"`
	Path   string `json:"path"`
	Length int64  `json:"length"`
}

type metaResult struct {
	Target      string     `json:"target"`
	InfoHash    string     `json:"infohash"`
	InfoHashV2  string     `json:"infohash_v2,omitempty"`
	OK          bool       `json:"ok"`
	Error       string     `json:"error,omitempty"`
	File        string     `json:"file,omitempty"`
	Name        string     `json:"name,omitempty"`
	Size        int64      `json:"size,omitempty"`
	PieceLength int64      `json:"piece_length,omitempty"`
	Pieces      int        `json:"pieces,omitempty"`
	Files       []metaFile `json:"files,omitempty"`
	ElapsedMS   int64      `json:"elapsed_ms"`
}

// targetSpec is one target and where it was given: "" for an argument,
// "list.txt line 3" for a --from line, so a bad line can be found.
type targetSpec struct {
	text, where string
}

// readTargets collects the command's targets: arguments, then --from.
func readTargets(c *cli.Context) ([]targetSpec, error) {
	var targets []targetSpec
	for _, a := range c.Args().Slice() {
		targets = append(targets, targetSpec{text: a})
	}
	if f := c.String("from"); f != "" {
		var r io.Reader = os.Stdin
		name := "stdin"
		if f != "-" {
			fh, err := os.Open(f)
			if err != nil {
				return nil, fmt.Errorf("--from: %w", err)
			}
			defer fh.Close()
			r, name = fh, f
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				targets = append(targets, targetSpec{text: l, where: fmt.Sprintf("%s line %d", name, n)})
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--from %s: after line %d: %w", name, len(targets), err)
		}
	}
	return targets, nil
}

func metaAction(c *cli.Context) error {
	targets, err := readTargets(c)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return usageHint("meta needs a magnet URI or infohash (or --from FILE)")
	}
	out := c.String("output")
	if out == "-" && len(targets) > 1 {
		return usageHint("-o - takes a single target")
	}
	if out == "-" && c.Bool("print") {
		return usageError("--print and -o - would both write to stdout; use --json, or -o FILE with --print")
	}
	if out == "-" && !c.Bool("json") && isTerminal(c.App.Writer) {
		return usageError("-o - would write a binary .torrent to the terminal; redirect it (> x.torrent) or pipe it")
	}
	if out != "" && out != "-" && len(targets) > 1 && !strings.Contains(out, "{infohash}") && !strings.Contains(out, "{name}") {
		return usageError("with several targets -o must be a template with {name} or {infohash}")
	}
	// Parse everything first: a typo fails fast, before joining the DHT.
	mags := make([]*magnet.Magnet, len(targets))
	parseErrs := make([]error, len(targets))
	for i, t := range targets {
		m, err := parseTarget(t.text)
		if err != nil {
			if t.where != "" {
				err = fmt.Errorf("%s: %w", t.where, err)
			}
			if len(targets) == 1 {
				return usageError("%s", userMessage(err))
			}
			parseErrs[i] = err
			continue
		}
		mags[i] = m
	}
	log := logger(c)
	// A meta run is short-lived: read-only (BEP 43), so nobody keeps it in a
	// table. It listens on --listen as get does, and says so to trackers and
	// the DHT: a seed that dials the peers it is told of (one that cannot
	// accept connections itself) gives us the metadata too.
	set, ln, err := joinPeerNet(c.Context, c, log, true)
	if err != nil {
		return err
	}
	defer set.Close()
	defer ln.Close()
	peerID := newPeerID()
	in := acceptMeta(c.Context, ln, mags, peerID, log)
	defer in.stop()

	jobs := max(c.Int("jobs"), 1)
	results := make(chan metaResult)
	var wg sync.WaitGroup
	sem := make(chan struct{}, jobs)
	var writeMu sync.Mutex // guards output file creation across jobs
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if mags[i] == nil {
				results <- metaResult{Target: t.text, Error: userMessage(parseErrs[i])}
				return
			}
			sem <- struct{}{}
			defer func() { <-sem }()
			results <- fetchOne(c, set, ln, in, peerID, t.text, mags[i], &writeMu)
		}()
	}
	go func() { wg.Wait(); close(results) }()

	failed := 0
	enc := json.NewEncoder(c.App.Writer)
	for r := range results {
		if !r.OK {
			failed++
		}
		switch {
		case c.Bool("json"):
			_ = enc.Encode(r)
		case out == "-":
			if !r.OK {
				fmt.Fprintf(c.App.ErrWriter, "FAIL %s %s\n", esc(orTarget(r)), esc(r.Error))
			}
		case r.OK:
			fmt.Fprintf(c.App.Writer, "OK   %s %s (%s, %s)\n", r.InfoHash, esc(r.File), esc(r.Name), humanBytes(r.Size))
			if c.Bool("print") {
				printMeta(c.App.Writer, r)
			}
		default:
			fmt.Fprintf(c.App.Writer, "FAIL %s %s\n", esc(orTarget(r)), esc(r.Error))
		}
	}
	if failed > 0 {
		if len(targets) == 1 {
			return cli.Exit("", 1)
		}
		return cli.Exit(fmt.Sprintf("%d of %d failed", failed, len(targets)), 1)
	}
	return nil
}

// parseTarget is magnet.ParseTarget with the message a bare string that
// looks like a mistyped infohash deserves: the same one as inside a magnet
// ("want 40 hex or 32 base32 characters, got 39").
func parseTarget(s string) (*magnet.Magnet, error) {
	m, err := magnet.ParseTarget(s)
	if err == nil {
		return m, nil
	}
	t := strings.TrimSpace(s)
	if len(t) >= 16 && len(t) <= 64 && strings.Trim(strings.ToLower(t), "0123456789abcdefghijklmnopqrstuvwxyz") == "" {
		if _, ierr := magnet.ParseInfoHash(t); ierr != nil {
			return nil, ierr
		}
	}
	return nil, err
}

func orTarget(r metaResult) string {
	if r.InfoHash != "" {
		return r.InfoHash
	}
	return r.Target
}

func printMeta(w io.Writer, r metaResult) {
	if r.InfoHashV2 != "" {
		fmt.Fprintf(w, "  infohash v2:  %s\n", r.InfoHashV2)
	}
	fmt.Fprintf(w, "  name:         %s\n  total size:   %s (%d bytes)\n  piece length: %s (%d pieces)\n  files:\n", esc(r.Name), humanBytes(r.Size), r.Size, humanBytes(r.PieceLength), r.Pieces)
	fmt.Fprintf(w, "    %5s  %12s  %s\n", "index", "bytes", "path (select with get --select INDEX,...)")
	for i, f := range r.Files {
		fmt.Fprintf(w, "    %5d  %12d  %s\n", i, f.Length, esc(f.Path))
	}
}

// metaIncoming is meta's accepting of the peers that connect to us, for
// every target at once (peersource.Early.Add per target); nil e when the
// listener cannot stop accepting without being closed.
type metaIncoming struct{ e *peersource.Early }

func acceptMeta(ctx context.Context, ln *peerListener, mags []*magnet.Magnet, peerID [20]byte, log *slog.Logger) metaIncoming {
	// The v2 bit when any target is v2: the piece layers of a v2 .torrent
	// come by hash requests, on these connections too.
	v2 := slices.ContainsFunc(mags, func(m *magnet.Magnet) bool { return m != nil && m.HasV2 })
	o := peerwire.Options{PeerID: peerID, ExtHandshake: metadata.LocalExtHandshake(0), V2: v2}
	e, err := peersource.AcceptEarly(ctx, peersource.AcceptConfig{Listener: ln.Listener, Options: o, Logger: log})
	if err != nil {
		log.Debug("not accepting peers", "err", err)
	}
	return metaIncoming{e}
}

// add takes the peers that connect for hashes until remove.
func (in metaIncoming) add(hashes [][20]byte) (<-chan *peerwire.Conn, func()) {
	if in.e == nil {
		return nil, func() {}
	}
	return in.e.Add(hashes)
}

// stop ends the accepting; meta has no swarm to hand anything to.
func (in metaIncoming) stop() {
	if in.e != nil {
		closeAll(in.e.Stop())
	}
}

// fetchOne resolves one magnet to a written .torrent.
func fetchOne(c *cli.Context, set *dhtSet, ln *peerListener, in metaIncoming, peerID [20]byte, target string, m *magnet.Magnet, writeMu *sync.Mutex) metaResult {
	start := time.Now()
	res := metaResult{Target: target, InfoHash: hex.EncodeToString(m.InfoHash[:])}
	ih, also := m.InfoHash, [][20]byte(nil)
	if m.HasV2 {
		res.InfoHashV2 = hex.EncodeToString(m.InfoHashV2[:])
		if !m.HasV1 {
			res.InfoHash = res.InfoHashV2
		}
		// Under the truncated v2 hash: those peers also answer hash
		// requests, for the piece layers the .torrent carries.
		hs := m.SwarmHashes()
		ih, also = hs[len(hs)-1], hs[:len(hs)-1]
	}
	fail := func(err error) metaResult {
		res.Error = userMessage(err)
		res.ElapsedMS = time.Since(start).Milliseconds()
		return res
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	log := logger(c)
	direct := resolvePeers(ctx, m.Peers, log)
	// Peers that connect for the target are taken before anyone is told
	// where we are: one source for every swarm hash of the target (a
	// hybrid's two), announcing the port we listen on.
	conns, remove := in.add(append([][20]byte{ih}, also...))
	f := startFinder(ctx, set, peersource.Config{InfoHash: ih, Also: also, PeerID: peerID, Port: ln.bound().Port(),
		Direct: direct, Trackers: m.Trackers, Logger: log})
	fctx, fcancel := context.WithCancel(ctx)
	opts := metadata.Options{MaxSize: c.Int("max-metadata-size"), PeerID: peerID, Logger: log, LocalAddr: ln.localIP(), InfoHashV2: m.InfoHashV2,
		Incoming: conns, Sources: m.Sources, UTP: set.utpDialer()}
	r, err := metadata.Fetch(fctx, ih, f.src.Peers(fctx), opts)
	fcancel()
	remove()
	f.stop()
	defer closeAll(r.Conns)
	if err != nil {
		switch {
		case c.Context.Err() != nil:
			return fail(fmt.Errorf("interrupted (%s)", f.tried()))
		case ctx.Err() != nil:
			return fail(fmt.Errorf("no metadata within %v: %s", c.Duration("timeout"), f.tried()))
		}
		return fail(fmt.Errorf("%w (%s)", err, f.tried()))
	}
	h := r.Hashes
	if h.HasV1 {
		res.InfoHash = hex.EncodeToString(h.V1[:])
	}
	if h.HasV2 {
		res.InfoHashV2 = hex.EncodeToString(h.V2[:])
		if !h.HasV1 {
			res.InfoHash = res.InfoHashV2
		}
	}
	var layers map[[32]byte][]byte
	if r.Torrent != nil { // from the .torrent an xs= named
		layers = r.Torrent.PieceLayers
	}
	if h.HasV2 && layers == nil {
		// The .torrent of a v2 or hybrid torrent carries piece layers: ask
		// the peers that gave the info dict. A hybrid asked for by btih may
		// get none (its peers speak v1): it is written without them, and a
		// v2 client asks its peers for them as it would anyway.
		layers, err = metadata.FetchPieceLayers(ctx, r.Info, r.Conns, opts)
		if err != nil {
			if !h.HasV1 {
				return fail(fmt.Errorf("%w (%s)", err, f.tried()))
			}
			log.Info("hybrid torrent written without its piece layers: the peers did not give them", "err", err)
		}
	}
	// The magnet's web seeds, and those of the .torrent an xs= named, go into the file: a client
	// given it downloads from them as we would.
	webSeeds := slices.Clone(m.WebSeeds)
	if r.Torrent != nil {
		for _, u := range r.Torrent.Meta.UrlList {
			if !slices.Contains(webSeeds, u) {
				webSeeds = append(webSeeds, u)
			}
		}
	}
	data, err := assemble(r.Info, layers, m.Trackers, webSeeds)
	if err != nil {
		return fail(err)
	}
	info, _, err := infoView(r.Info)
	if err != nil {
		return fail(err)
	}
	fillMeta(&res, info)
	if tor, terr := torrentfile.FromInfoV2(r.Info, nil, nil); terr == nil && tor.V1 == nil {
		res.Pieces = int(tor.V2.NumPieces)
	}
	path, err := writeTorrent(c, data, res, writeMu)
	if err != nil {
		return fail(err)
	}
	res.File, res.OK = path, true
	res.ElapsedMS = time.Since(start).Milliseconds()
	return res
}

// assemble is torrentfile.Assemble with web seeds (the url-list).
func assemble(info []byte, layers map[[32]byte][]byte, trackers, webSeeds []string) ([]byte, error) {
	t, err := torrentfile.FromInfoV2(info, layers, trackers)
	if err != nil {
		return nil, err
	}
	t.Meta.UrlList = webSeeds
	var b bytes.Buffer
	if err := torrentfile.WriteTorrent(&b, t); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func fillMeta(res *metaResult, info *metainfo.Info) {
	res.Name = info.BestName()
	res.Size = info.TotalLength()
	res.PieceLength = info.PieceLength
	res.Pieces = info.NumPieces()
	for i, f := range info.UpvertedFiles() {
		p := strings.Join(f.BestPath(), "/")
		if len(info.Files) == 0 {
			p = info.BestName()
		}
		res.Files = append(res.Files, metaFile{Index: i, Path: p, Length: f.Length})
	}
}

// safeFileName makes a torrent's name usable as one file name here.
func safeFileName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(name, ".")
	if name == "" {
		name = "torrent"
	}
	return name
}

// writeTorrent writes mi where -o says, never over an existing file unless
// --force; the file appears whole or not at all.
func writeTorrent(c *cli.Context, data []byte, res metaResult, writeMu *sync.Mutex) (string, error) {
	out := c.String("output")
	if out == "-" {
		writeMu.Lock()
		defer writeMu.Unlock()
		_, err := c.App.Writer.Write(data)
		return "-", err
	}
	if out == "" {
		out = "{name}.torrent"
	}
	path := strings.NewReplacer("{name}", safeFileName(res.Name), "{infohash}", res.InfoHash).Replace(out)
	writeMu.Lock()
	defer writeMu.Unlock()
	if !c.Bool("force") {
		if _, err := os.Stat(path); err == nil {
			return "", fmt.Errorf("%s exists (use --force to overwrite)", path)
		}
	}
	if d := filepath.Dir(path); d != "." {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("cannot write %s: %w", path, pathErr(err))
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".magnetget-*.torrent")
	if err != nil {
		// The temp file is ours; the user asked for path.
		return "", fmt.Errorf("cannot write %s: %w", path, pathErr(err))
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("cannot write %s: %w", path, pathErr(err))
	}
	return path, nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pathErr is the reason inside a *PathError or *LinkError, without the
// (temporary) path it names.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

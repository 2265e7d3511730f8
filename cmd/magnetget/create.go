package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget/magnet"
	"github.com/magnetget/magnetget/torrentfile"
)

func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "where to write the .torrent (default <name>.torrent)"},
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite an existing .torrent"},
		&cli.StringFlag{Name: "piece-length", Usage: "piece length, a power of two from 16K to 16M (default: about 1000-2000 pieces)"},
		&cli.StringFlag{Name: "comment", Usage: "comment stored in the torrent"},
		&cli.StringSliceFlag{Name: "tracker", Aliases: []string{"t"}, Usage: "tracker URL, repeatable"},
		&cli.StringSliceFlag{Name: "web-seed", Aliases: []string{"w"}, Usage: "web seed URL, repeatable"},
		&cli.BoolFlag{Name: "v2", Usage: "make a BitTorrent v2-only torrent (BEP 52; v1-only clients cannot use it)"},
		&cli.BoolFlag{Name: "hybrid", Usage: "make a hybrid v1+v2 torrent (two infohashes, one swarm; what libtorrent 2 makes)"},
	}
}

func createCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "make a .torrent from a file or directory",
		ArgsUsage: "<file-or-dir>",
		Flags:     append(createFlags(), logFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageHint("create takes one file or directory")
			}
			tor, path, err := makeTorrent(c, c.Args().First())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "wrote %s\n", esc(path))
			if c.Bool("verbose") {
				describeTorrent(c.App.ErrWriter, tor)
			} else if tor.V2 != nil {
				printHashes(c.App.ErrWriter, tor)
			}
			fmt.Fprintln(c.App.Writer, magnetOf(tor, nil))
			return nil
		},
	}
}

// makeTorrent hashes root and writes its .torrent, showing progress on a
// terminal.
func makeTorrent(c *cli.Context, root string) (*torrentfile.Torrent, string, error) {
	if c.Bool("v2") && c.Bool("hybrid") {
		return nil, "", usageError("--v2 (v2 only) and --hybrid (v1 and v2) exclude each other")
	}
	pl, err := parseRate(c.String("piece-length"))
	if err != nil {
		return nil, "", usageError("--piece-length: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, "", err
	}
	out := c.String("output")
	if out == "" {
		out = safeFileName(filepath.Base(abs)) + ".torrent"
	}
	if !c.Bool("force") {
		if _, err := os.Stat(out); err == nil {
			if c.Command != nil && c.Command.Name == "seed" {
				return nil, "", usageError("%s exists: to seed it, magnetget seed --torrent %s %s (or --force to make it again)", out, out, root)
			}
			return nil, "", usageError("%s exists (use --force to overwrite, or -o another name)", out)
		}
	}
	ev := newEvents(io.Discard, c.App.ErrWriter, false)
	var mu sync.Mutex
	last := time.Time{}
	progress := func(done, total int64) {
		if !ev.tty {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 200*time.Millisecond && done < total {
			return
		}
		last = time.Now()
		fmt.Fprintf(c.App.ErrWriter, "\rhashing %s / %s\x1b[K", humanBytes(done), humanBytes(total))
		if done >= total {
			fmt.Fprintln(c.App.ErrWriter)
		}
	}
	start := time.Now()
	tor, err := torrentfile.CreateTorrent(c.Context, abs, torrentfile.Options{
		PieceLength: pl, Comment: c.String("comment"), Trackers: c.StringSlice("tracker"),
		WebSeeds: c.StringSlice("web-seed"), Progress: progress, V2: c.Bool("v2"), Hybrid: c.Bool("hybrid"),
	})
	if err != nil {
		return nil, "", err
	}
	if err := writeFileAtomic(out, func(w io.Writer) error { return torrentfile.WriteTorrent(w, tor) }); err != nil {
		return nil, "", err
	}
	if c.Bool("verbose") {
		if info, _, err := infoView(tor.Meta.InfoBytes); err == nil {
			took := time.Since(start)
			fmt.Fprintf(c.App.ErrWriter, "hashed %s in %s (%s/s)\n", humanBytes(info.TotalLength()), roundDur(took), humanBytes(int64(rate(info.TotalLength(), took))))
		}
	}
	return tor, out, nil
}

func writeFileAtomic(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".magnetget-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// magnetFor prints the magnet link for a torrent, with peer hints if any.
func magnetFor(mi *metainfo.MetaInfo, ih [20]byte, peers []string) string {
	m := &magnet.Magnet{InfoHash: ih, Peers: peers}
	if info, err := mi.UnmarshalInfo(); err == nil {
		m.Name = info.BestName()
		m.Length = info.TotalLength()
	}
	for _, tier := range mi.UpvertedAnnounceList() {
		m.Trackers = append(m.Trackers, tier...)
	}
	m.WebSeeds = mi.UrlList
	return m.String()
}

// describeTorrent prints what create -v shows: the figures a user checks
// before publishing a magnet.
func describeTorrent(w io.Writer, tor *torrentfile.Torrent) {
	mi := tor.Meta
	info, _, err := infoView(mi.InfoBytes)
	if err != nil {
		return
	}
	printHashes(w, tor)
	files := info.UpvertedFiles()
	fmt.Fprintf(w, "  name:         %s\n  total size:   %s (%d bytes)\n  piece length: %s (%d pieces)\n  files:        %d\n",
		esc(info.BestName()), humanBytes(info.TotalLength()), info.TotalLength(), humanBytes(info.PieceLength), numPieces(info, tor), len(files))
	for i, f := range files {
		if i == 20 {
			fmt.Fprintf(w, "    ... and %d more\n", len(files)-i)
			break
		}
		p := info.BestName()
		if len(info.Files) > 0 {
			p = strings.Join(f.BestPath(), "/")
		}
		fmt.Fprintf(w, "    %5d  %12d  %s\n", i, f.Length, esc(p))
	}
	for _, tr := range mi.UpvertedAnnounceList() {
		for _, u := range tr {
			fmt.Fprintf(w, "  tracker:      %s\n", esc(u))
		}
	}
	for _, u := range mi.UrlList {
		fmt.Fprintf(w, "  web seed:     %s\n", esc(u))
	}
	if mi.Comment != "" {
		fmt.Fprintf(w, "  comment:      %s\n", esc(mi.Comment))
	}
}

// printHashes shows a torrent's infohashes: v1, v2 or both.
func printHashes(w io.Writer, tor *torrentfile.Torrent) {
	if ih, ok := tor.HashV1(); ok {
		fmt.Fprintf(w, "  infohash:     %x\n", ih)
	}
	if ih, ok := tor.HashV2(); ok {
		fmt.Fprintf(w, "  infohash v2:  %x\n", ih)
	}
}

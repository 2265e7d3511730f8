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
			mi, path, err := makeTorrent(c, c.Args().First())
			if err != nil {
				return err
			}
			ih := mi.HashInfoBytes()
			fmt.Fprintf(c.App.ErrWriter, "wrote %s\n", esc(path))
			if c.Bool("verbose") {
				describeTorrent(c.App.ErrWriter, mi)
			}
			fmt.Fprintln(c.App.Writer, magnetFor(mi, ih, nil))
			return nil
		},
	}
}

// makeTorrent hashes root and writes its .torrent, showing progress on a
// terminal.
func makeTorrent(c *cli.Context, root string) (*metainfo.MetaInfo, string, error) {
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
	mi, err := torrentfile.Create(c.Context, abs, torrentfile.Options{
		PieceLength: pl, Comment: c.String("comment"), Trackers: c.StringSlice("tracker"),
		WebSeeds: c.StringSlice("web-seed"), Progress: progress,
	})
	if err != nil {
		return nil, "", err
	}
	if err := writeFileAtomic(out, func(w io.Writer) error { return torrentfile.Write(w, mi) }); err != nil {
		return nil, "", err
	}
	if c.Bool("verbose") {
		if info, err := mi.UnmarshalInfo(); err == nil {
			took := time.Since(start)
			fmt.Fprintf(c.App.ErrWriter, "hashed %s in %s (%s/s)\n", humanBytes(info.TotalLength()), roundDur(took), humanBytes(int64(rate(info.TotalLength(), took))))
		}
	}
	return mi, out, nil
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
func describeTorrent(w io.Writer, mi *metainfo.MetaInfo) {
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return
	}
	ih := mi.HashInfoBytes()
	files := info.UpvertedFiles()
	fmt.Fprintf(w, "  infohash:     %x\n  name:         %s\n  total size:   %s (%d bytes)\n  piece length: %s (%d pieces)\n  files:        %d\n",
		ih, esc(info.BestName()), humanBytes(info.TotalLength()), info.TotalLength(), humanBytes(info.PieceLength), info.NumPieces(), len(files))
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

package realclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// Aria2Config configures Aria2Download.
//
// aria2 ignores x.pe peer hints in magnets; it finds peers only through its
// DHT (one entry point on loopback is enough) or a tracker, and it accepts
// incoming connections, so a seeder that knows its address can also dial it.
type Aria2Config struct {
	// URI is a magnet URI or a .torrent path.
	URI string
	// Dir to download into; created if missing.
	Dir string
	// DHTEntry turns the DHT on with this entry point; zero means DHT off.
	DHTEntry netip.AddrPort
	// MetadataOnly stops after the metadata and saves it as
	// Dir/<hex infohash>.torrent.
	MetadataOnly bool
	// IP to bind every socket to; zero means Aria2IP.
	IP netip.Addr
	// ExtraArgs are appended to the command line.
	ExtraArgs   []string
	MaxLifetime time.Duration
	Logger      *slog.Logger
}

// Aria2Result reports a finished aria2c run.
type Aria2Result struct {
	Elapsed time.Duration // process start to exit
	Torrent string        // MetadataOnly: the saved .torrent
	Output  string        // the last 16 KiB of its console output
}

// aria2Common are the flags every run gets: no config file, nothing outside
// loopback (no LPD, no IPv6, no trackers other than loopback ones), quiet
// output, no preallocation (aria2's default writes the whole file first).
func aria2Common(ip netip.Addr, port int, dir, dhtFile string, entry netip.AddrPort) []string {
	args := []string{
		"--no-conf=true",
		"--stop-with-process=" + strconv.Itoa(os.Getpid()),
		"--interface=" + ip.String(),
		"--listen-port=" + strconv.Itoa(port),
		"--dht-listen-port=" + strconv.Itoa(port),
		"--disable-ipv6=true",
		"--enable-dht6=false",
		"--bt-enable-lpd=false",
		"--enable-peer-exchange=true",
		"--async-dns=false",
		"--file-allocation=none",
		"--auto-file-renaming=false",
		"--allow-overwrite=true",
		"--enable-color=false",
		"--summary-interval=0",
		"--show-console-readout=false",
		"--console-log-level=warn",
		"--dir=" + dir,
	}
	if entry.IsValid() {
		args = append(args,
			"--enable-dht=true",
			"--dht-entry-point="+entry.String(),
			// A fresh routing table each run: a stale one would hold dead
			// loopback ports from earlier tests.
			"--dht-file-path="+dhtFile,
			"--dht-message-timeout=3",
		)
	} else {
		args = append(args, "--enable-dht=false")
	}
	return args
}

// checkTorrentFile refuses .torrent files that name non-loopback trackers
// or web seeds.
func checkTorrentFile(path string) error {
	mi, err := metainfo.LoadFromFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	urls := []string{}
	if mi.Announce != "" {
		urls = append(urls, mi.Announce)
	}
	for _, tier := range mi.AnnounceList {
		urls = append(urls, tier...)
	}
	urls = append(urls, mi.UrlList...)
	for _, u := range urls {
		if err := checkLoopbackURL(u); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func checkURI(uri string) error {
	if strings.HasPrefix(uri, "magnet:") {
		return checkMagnet(uri)
	}
	return checkTorrentFile(uri)
}

// Aria2Download runs aria2c until it has downloaded URI (or its metadata)
// and exits by itself (--seed-time=0). ctx bounds the run.
func Aria2Download(ctx context.Context, cfg Aria2Config) (Aria2Result, error) {
	if err := Aria2Available(); err != nil {
		return Aria2Result{}, err
	}
	if cfg.URI == "" || cfg.Dir == "" {
		return Aria2Result{}, errors.New("aria2: URI and Dir are required")
	}
	if err := checkURI(cfg.URI); err != nil {
		return Aria2Result{}, fmt.Errorf("aria2: %w", err)
	}
	if !cfg.IP.IsValid() {
		cfg.IP = Aria2IP
	}
	if err := checkLoopbackAddr(cfg.IP); err != nil {
		return Aria2Result{}, fmt.Errorf("aria2: %w", err)
	}
	if cfg.DHTEntry.IsValid() {
		if err := checkLoopbackAddr(cfg.DHTEntry.Addr()); err != nil {
			return Aria2Result{}, fmt.Errorf("aria2 dht entry: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return Aria2Result{}, fmt.Errorf("aria2: %w", err)
	}
	// aria2c runs in Dir: a relative .torrent path must not change meaning.
	if !strings.HasPrefix(cfg.URI, "magnet:") {
		abs, err := filepath.Abs(cfg.URI)
		if err != nil {
			return Aria2Result{}, fmt.Errorf("aria2: %w", err)
		}
		cfg.URI = abs
	}
	port, err := FreePort(cfg.IP)
	if err != nil {
		return Aria2Result{}, fmt.Errorf("aria2: %w", err)
	}
	tmp, err := os.MkdirTemp("", "realclient-aria2-")
	if err != nil {
		return Aria2Result{}, fmt.Errorf("aria2: %w", err)
	}
	defer os.RemoveAll(tmp)
	args := aria2Common(cfg.IP, port, cfg.Dir, filepath.Join(tmp, "dht.dat"), cfg.DHTEntry)
	args = append(args, "--seed-time=0", "--bt-stop-timeout=0")
	if cfg.MetadataOnly {
		args = append(args, "--bt-metadata-only=true", "--bt-save-metadata=true")
	}
	args = append(args, cfg.ExtraArgs...)
	args = append(args, cfg.URI)
	start := time.Now()
	p, err := startProc(ctx, procConfig{name: "aria2c", path: "aria2c", args: args, dir: cfg.Dir, lifetime: cfg.MaxLifetime, logger: cfg.Logger})
	if err != nil {
		return Aria2Result{}, err
	}
	err = p.Wait(ctx)
	res := Aria2Result{Elapsed: time.Since(start), Output: p.output.String()}
	if err != nil {
		return res, err
	}
	if cfg.MetadataOnly {
		ih, herr := infoHashOf(cfg.URI)
		if herr == nil {
			res.Torrent = filepath.Join(cfg.Dir, ih+".torrent")
			if _, err := os.Stat(res.Torrent); err != nil {
				return res, fmt.Errorf("aria2: metadata not saved: %w", err)
			}
		}
	}
	return res, nil
}

// infoHashOf returns the lowercase hex infohash of a magnet or .torrent.
func infoHashOf(uri string) (string, error) {
	if strings.HasPrefix(uri, "magnet:") {
		m, err := metainfo.ParseMagnetUri(uri)
		if err != nil {
			return "", err
		}
		return m.InfoHash.HexString(), nil
	}
	mi, err := metainfo.LoadFromFile(uri)
	if err != nil {
		return "", err
	}
	return mi.HashInfoBytes().HexString(), nil
}

// Aria2SeedConfig configures StartAria2Seeder.
type Aria2SeedConfig struct {
	// Torrent is the .torrent; DataDir holds its content.
	Torrent, DataDir string
	// DHTEntry turns the DHT on (aria2 then announces the torrent itself).
	DHTEntry netip.AddrPort
	// SeedTime after the check; 0 means until Close or MaxLifetime.
	SeedTime time.Duration
	// IP to bind; zero means Aria2IP.
	IP          netip.Addr
	ExtraArgs   []string
	MaxLifetime time.Duration
	Logger      *slog.Logger
}

// Aria2Seeder is aria2c seeding one torrent (aria2c -V --seed-ratio=0.0).
type Aria2Seeder struct {
	p    *proc
	tmp  string // holds the DHT routing table file
	addr netip.AddrPort
}

// StartAria2Seeder starts aria2c and returns once its peer port accepts
// connections. aria2 checks the data first (-V) and serves pieces after.
// ctx bounds the start-up only; aria2c runs until SeedTime ends, Close or
// MaxLifetime.
func StartAria2Seeder(ctx context.Context, cfg Aria2SeedConfig) (*Aria2Seeder, error) {
	if err := Aria2Available(); err != nil {
		return nil, err
	}
	if cfg.Torrent == "" || cfg.DataDir == "" {
		return nil, errors.New("aria2 seeder: Torrent and DataDir are required")
	}
	if err := checkTorrentFile(cfg.Torrent); err != nil {
		return nil, fmt.Errorf("aria2 seeder: %w", err)
	}
	var err error
	if cfg.Torrent, err = filepath.Abs(cfg.Torrent); err != nil {
		return nil, fmt.Errorf("aria2 seeder: %w", err)
	}
	if !cfg.IP.IsValid() {
		cfg.IP = Aria2IP
	}
	if err := checkLoopbackAddr(cfg.IP); err != nil {
		return nil, fmt.Errorf("aria2 seeder: %w", err)
	}
	if cfg.DHTEntry.IsValid() {
		if err := checkLoopbackAddr(cfg.DHTEntry.Addr()); err != nil {
			return nil, fmt.Errorf("aria2 seeder dht entry: %w", err)
		}
	}
	lifetime := cfg.MaxLifetime
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	seed := cfg.SeedTime
	if seed <= 0 {
		seed = lifetime
	}
	port, err := FreePort(cfg.IP)
	if err != nil {
		return nil, fmt.Errorf("aria2 seeder: %w", err)
	}
	tmp, err := os.MkdirTemp("", "realclient-aria2-")
	if err != nil {
		return nil, fmt.Errorf("aria2 seeder: %w", err)
	}
	args := aria2Common(cfg.IP, port, cfg.DataDir, filepath.Join(tmp, "dht.dat"), cfg.DHTEntry)
	args = append(args, "-V", "--seed-ratio=0.0",
		"--seed-time="+strconv.FormatFloat(seed.Minutes(), 'f', 3, 64))
	args = append(args, cfg.ExtraArgs...)
	args = append(args, cfg.Torrent)
	p, err := startProc(context.WithoutCancel(ctx), procConfig{name: "aria2c seeder", path: "aria2c", args: args, dir: cfg.DataDir, lifetime: lifetime, logger: cfg.Logger})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	s := &Aria2Seeder{p: p, tmp: tmp, addr: netip.AddrPortFrom(cfg.IP, uint16(port))}
	if err := waitListening(ctx, p, s.addr); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// waitListening dials addr every 50 ms until it accepts, the process
// exits, or ctx ends.
func waitListening(ctx context.Context, p *proc, addr netip.AddrPort) error {
	var d net.Dialer
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr.String())
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s: waiting for %v to listen: %w", p.cfg.name, addr, p.exitError())
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for %v to listen: %w%s", p.cfg.name, addr, ctx.Err(), p.outputSuffix())
		case <-t.C:
		}
	}
}

// Addr is the seeder's TCP peer address (its DHT uses the same UDP port).
func (s *Aria2Seeder) Addr() netip.AddrPort { return s.addr }

// Output returns aria2's recent console output.
func (s *Aria2Seeder) Output() string { return s.p.output.String() }

// Close kills aria2c and waits for it.
func (s *Aria2Seeder) Close() error {
	err := s.p.Close()
	return errors.Join(err, os.RemoveAll(s.tmp))
}

// Wait waits for aria2c to exit by itself (SeedTime over).
func (s *Aria2Seeder) Wait(ctx context.Context) error { return s.p.Wait(ctx) }

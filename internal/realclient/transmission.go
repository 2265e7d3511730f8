package realclient

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Transmission 3.00 on loopback: its DHT drops every packet from 127/8 and
// it refuses to dial 127/8 peers from any source (tracker, DHT, PEX), but
// it accepts incoming connections. transmission-cli can therefore only be a
// leecher that a seeder dials; keep its DHT off (with DHT on and no
// bootstrap success it looks up a public host name after about 40 s).
// transmission-show reads a .torrent and never touches the network (as long
// as --scrape is not given); it is never given --scrape here.

// TorrentShow is what transmission-show prints about a .torrent. Sizes are
// rounded by transmission ("100.0 kB"); they are kept as text.
type TorrentShow struct {
	Name       string
	InfoHash   [20]byte
	Pieces     int
	PieceSize  string
	TotalSize  string
	Private    bool
	Trackers   []string // all tiers, in order
	WebSeeds   []string
	Files      []ShowFile
	CreatedBy  string
	RawOutput  string
	HashString string
}

// ShowFile is one line of the FILES section: the path includes the
// torrent's name for multi-file torrents ("d/sub/x").
type ShowFile struct {
	Path string
	Size string
}

// TransmissionShow runs transmission-show on a .torrent file and parses
// its output.
func TransmissionShow(ctx context.Context, torrent string) (TorrentShow, error) {
	if err := lookPath("transmission-show", "transmission-cli"); err != nil {
		return TorrentShow{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "transmission-show", torrent).CombinedOutput()
	if err != nil {
		return TorrentShow{}, fmt.Errorf("transmission-show %s: %w: %w: %s", torrent, ErrClient, err, strings.TrimSpace(string(out)))
	}
	return ParseTransmissionShow(string(out))
}

// ErrShowFormat: transmission-show printed something this parser does not
// know.
var ErrShowFormat = errors.New("unexpected transmission-show output")

// ParseTransmissionShow parses transmission-show's output (version 3.00).
func ParseTransmissionShow(out string) (TorrentShow, error) {
	ts := TorrentShow{RawOutput: out}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			switch trimmed {
			case "GENERAL", "TRACKERS", "FILES", "WEBSEEDS":
				section = trimmed
			}
			continue
		}
		switch section {
		case "GENERAL":
			k, v, ok := strings.Cut(trimmed, ": ")
			if !ok {
				continue
			}
			switch k {
			case "Name":
				ts.Name = v
			case "Hash":
				b, err := hex.DecodeString(v)
				if err != nil || len(b) != 20 {
					return ts, fmt.Errorf("%w: hash %q", ErrShowFormat, v)
				}
				copy(ts.InfoHash[:], b)
				ts.HashString = v
			case "Piece Count":
				n, err := strconv.Atoi(v)
				if err != nil {
					return ts, fmt.Errorf("%w: piece count %q", ErrShowFormat, v)
				}
				ts.Pieces = n
			case "Piece Size":
				ts.PieceSize = v
			case "Total Size":
				ts.TotalSize = v
			case "Privacy":
				ts.Private = v == "Private torrent"
			case "Created by":
				ts.CreatedBy = v
			}
		case "TRACKERS":
			if !strings.HasPrefix(trimmed, "Tier #") {
				ts.Trackers = append(ts.Trackers, trimmed)
			}
		case "WEBSEEDS":
			ts.WebSeeds = append(ts.WebSeeds, trimmed)
		case "FILES":
			i := strings.LastIndex(trimmed, " (")
			if i < 0 || !strings.HasSuffix(trimmed, ")") {
				return ts, fmt.Errorf("%w: file line %q", ErrShowFormat, trimmed)
			}
			ts.Files = append(ts.Files, ShowFile{Path: trimmed[:i], Size: trimmed[i+2 : len(trimmed)-1]})
		}
	}
	if ts.HashString == "" {
		return ts, fmt.Errorf("%w: no Hash line", ErrShowFormat)
	}
	return ts, nil
}

// TransmissionConfig configures StartTransmission.
type TransmissionConfig struct {
	// URI is a .torrent path or a magnet (the metadata then comes from a
	// peer that dials in).
	URI string
	// Dir to download into; created if missing.
	Dir string
	// IP to listen on; zero means TransmissionIP.
	IP          netip.Addr
	MaxLifetime time.Duration
	Logger      *slog.Logger
}

// Transmission is a transmission-cli leecher with DHT, LPD, PEX, uTP and
// port mapping off. It never dials loopback peers: dial Addr (for example
// with LibtorrentSeeder.Connect).
type Transmission struct {
	p      *proc
	tmp    string // config dir, finish script, marker
	marker string
	addr   netip.AddrPort
}

// StartTransmission starts transmission-cli and returns once its peer port
// accepts connections. ctx bounds the start-up only; the process runs until
// Close or MaxLifetime (it seeds after finishing).
func StartTransmission(ctx context.Context, cfg TransmissionConfig) (*Transmission, error) {
	if err := TransmissionAvailable(); err != nil {
		return nil, err
	}
	if cfg.URI == "" || cfg.Dir == "" {
		return nil, errors.New("transmission: URI and Dir are required")
	}
	if err := checkURI(cfg.URI); err != nil {
		return nil, fmt.Errorf("transmission: %w", err)
	}
	if !strings.HasPrefix(cfg.URI, "magnet:") {
		abs, err := filepath.Abs(cfg.URI)
		if err != nil {
			return nil, fmt.Errorf("transmission: %w", err)
		}
		cfg.URI = abs
	}
	if !cfg.IP.IsValid() {
		cfg.IP = TransmissionIP
	}
	if err := checkLoopbackAddr(cfg.IP); err != nil {
		return nil, fmt.Errorf("transmission: %w", err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("transmission: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("transmission: %w", err)
	}
	port, err := FreePort(cfg.IP)
	if err != nil {
		return nil, fmt.Errorf("transmission: %w", err)
	}
	tmp, err := os.MkdirTemp("", "realclient-transmission-")
	if err != nil {
		return nil, fmt.Errorf("transmission: %w", err)
	}
	t := &Transmission{tmp: tmp, marker: filepath.Join(tmp, "finished"), addr: netip.AddrPortFrom(cfg.IP, uint16(port))}
	settings := map[string]any{
		// With DHT on and no bootstrap success it looks up a public host
		// name after about 40 s.
		"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
		"port-forwarding-enabled": false, "blocklist-enabled": false, "rpc-enabled": false,
		"bind-address-ipv4": cfg.IP.String(), "bind-address-ipv6": "::1",
		"peer-port": port, "peer-port-random-on-start": false,
		"encryption": 0, "download-dir": dir, "incomplete-dir-enabled": false,
		"ratio-limit-enabled": false, "idle-seeding-limit-enabled": false,
	}
	b, err := json.Marshal(settings)
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, "settings.json"), b, 0o600)
	}
	script := filepath.Join(tmp, "finished.sh")
	if err == nil {
		err = os.WriteFile(script, []byte("#!/bin/sh\n: > '"+t.marker+"'\n"), 0o700)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("transmission: %w", err)
	}
	t.p, err = startProc(context.WithoutCancel(ctx), procConfig{
		name: "transmission-cli", path: "transmission-cli",
		args:     []string{"-g", tmp, "-w", dir, "-f", script, "-M", "-B", "-et", "-p", strconv.Itoa(port), cfg.URI},
		dir:      tmp,
		lifetime: cfg.MaxLifetime, logger: cfg.Logger,
	})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	if err := waitListening(ctx, t.p, t.addr); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// Addr is transmission's TCP peer address.
func (t *Transmission) Addr() netip.AddrPort { return t.addr }

// WaitDone waits until transmission has verified every piece (its finish
// script ran). Transmission does not create zero-length files.
func (t *Transmission) WaitDone(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(t.marker); err == nil {
			return nil
		}
		select {
		case <-t.p.done:
			return fmt.Errorf("transmission-cli: waiting for the download: %w", t.p.exitError())
		case <-ctx.Done():
			return fmt.Errorf("transmission-cli: waiting for the download: %w%s", ctx.Err(), t.p.outputSuffix())
		case <-tick.C:
		}
	}
}

// Close kills transmission-cli, waits for it and removes its config dir.
func (t *Transmission) Close() error {
	err := t.p.Close()
	return errors.Join(err, os.RemoveAll(t.tmp))
}

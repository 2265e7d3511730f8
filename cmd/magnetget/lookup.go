package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget/dht"
	"github.com/magnetget/magnetget/internal/maddr"
	"github.com/magnetget/magnetget/magnet"
)

func lookupCommand() *cli.Command {
	return &cli.Command{
		Name:      "lookup",
		Usage:     "print the peers the DHT knows for an infohash",
		ArgsUsage: "<infohash | magnet-uri>",
		Flags: append(append(dhtFlags(), logFlags()...),
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "stop after this long"},
			&cli.IntFlag{Name: "max-peers", Usage: "stop after this many peers (0: no limit)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line: peer, node that gave it, elapsed ms"},
		),
		Action: lookupAction,
	}
}

type lookupLine struct {
	Peer string `json:"peer"`
	From string `json:"from"`
	// InfoHash is the swarm hash whose lookup found the peer first (a hybrid
	// magnet's btih or truncated btmh), 40 hex.
	InfoHash  string `json:"infohash"`
	ElapsedMS int64  `json:"elapsed_ms"`
}

func lookupAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageHint("lookup takes one infohash or magnet URI")
	}
	m, err := magnet.ParseTarget(c.Args().First())
	if err != nil {
		return usageError("%v", err)
	}
	// Every swarm hash: a hybrid's peers may be announced under its v1 infohash
	// or its v2 one truncated to 20 bytes (BEP 52), which is also a v2-only
	// magnet's only one.
	hashes := m.SwarmHashes()
	log := logger(c)
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	start := time.Now()
	set, err := joinDHT(ctx, c, log, dht.Config{ReadOnly: true}, false) // short-lived: BEP 43
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return cli.Exit("no peers found: timed out joining the DHT", 1)
		}
		return err
	}
	defer set.Close()

	p := &peerPrinter{enc: json.NewEncoder(c.App.Writer), json: c.Bool("json"), w: c.App.Writer,
		max: c.Int("max-peers"), start: start, seen: map[netip.AddrPort]bool{}}
	// A lookup that finds nobody is repeated (2 s, 4 s, ... apart, at most
	// 30 s) until --timeout: a cold table, dead nodes or a swarm that has just
	// announced can make the first walk come back empty.
	for wait := 2 * time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := lookupAll(ctx, set, hashes, p)
		if p.found() > 0 {
			if err != nil && ctx.Err() == nil {
				// A hybrid's other hash may have peers its failed walk did not reach.
				log.Warn("a lookup failed; the peers above came from the others", "err", err)
			}
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		log.Debug("lookup found nobody; trying again", "in", wait, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	ihs := hex.EncodeToString(hashes[0][:])
	if len(hashes) > 1 {
		ihs += " or " + hex.EncodeToString(hashes[1][:])
	}
	switch {
	case c.Context.Err() != nil:
		return cli.Exit(fmt.Sprintf("interrupted: no peers found for %s", ihs), 130)
	default:
		return cli.Exit(fmt.Sprintf("no peers found for %s within %v (%d DHT nodes known)", ihs, c.Duration("timeout"), set.Stats().Nodes), 1)
	}
}

// lookupAll looks every hash up at once, printing each peer once, until the
// walks end, ctx ends or p has printed enough.
func lookupAll(ctx context.Context, set *dhtSet, hashes [][20]byte, p *peerPrinter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(hashes))
	var wg sync.WaitGroup
	for i, ih := range hashes {
		wg.Go(func() {
			errs[i] = set.Lookup(ctx, ih, func(r dht.PeerResult) bool {
				if !p.print(ih, r) {
					cancel() // enough: the other walk stops too
					return false
				}
				return true
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if errors.Is(err, context.Canceled) {
			errs[i] = nil // stopped because enough peers were printed
		}
	}
	return errors.Join(errs...)
}

// peerPrinter prints the peers of one lookup command, each address once
// whichever hash found it.
type peerPrinter struct {
	enc   *json.Encoder
	json  bool
	w     io.Writer
	max   int // 0: no limit
	start time.Time

	mu   sync.Mutex // guards seen, n and the writes
	seen map[netip.AddrPort]bool
	n    int
}

// print prints r's peer unless printed already; false: enough printed.
func (p *peerPrinter) print(ih [20]byte, r dht.PeerResult) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max > 0 && p.n >= p.max {
		return false
	}
	a := netip.AddrPortFrom(r.Peer.Addr().Unmap(), r.Peer.Port())
	if !p.seen[a] {
		p.seen[a] = true
		p.n++
		peer := maddr.FromAddrPort(a, "tcp").String()
		if p.json {
			_ = p.enc.Encode(lookupLine{Peer: peer, From: maddr.FromAddrPort(r.From, "udp").String(),
				InfoHash: hex.EncodeToString(ih[:]), ElapsedMS: time.Since(p.start).Milliseconds()})
		} else {
			fmt.Fprintln(p.w, peer)
		}
	}
	return p.max <= 0 || p.n < p.max
}

func (p *peerPrinter) found() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

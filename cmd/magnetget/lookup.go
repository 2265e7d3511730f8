package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	Peer      string `json:"peer"`
	From      string `json:"from"`
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
	// A v2-only magnet's swarm is announced under its infohash truncated to 20 bytes (BEP 52).
	ih := m.SwarmHashes()[0]
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

	found, max := 0, c.Int("max-peers")
	enc := json.NewEncoder(c.App.Writer)
	// A lookup that finds nobody is repeated (2 s, 4 s, ... apart, at most
	// 30 s) until --timeout: a cold table, dead nodes or a swarm that has just
	// announced can make the first walk come back empty.
	for wait := 2 * time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := set.Lookup(ctx, ih, func(r dht.PeerResult) bool {
			found++
			peer := maddr.FromAddrPort(r.Peer, "tcp").String()
			if c.Bool("json") {
				_ = enc.Encode(lookupLine{Peer: peer, From: maddr.FromAddrPort(r.From, "udp").String(), ElapsedMS: time.Since(start).Milliseconds()})
			} else {
				fmt.Fprintln(c.App.Writer, peer)
			}
			return max <= 0 || found < max
		})
		if found > 0 {
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
	ihs := hex.EncodeToString(ih[:])
	switch {
	case c.Context.Err() != nil:
		return cli.Exit(fmt.Sprintf("interrupted: no peers found for %s", ihs), 130)
	default:
		return cli.Exit(fmt.Sprintf("no peers found for %s within %v (%d DHT nodes known)", ihs, c.Duration("timeout"), set.Stats().Nodes), 1)
	}
}

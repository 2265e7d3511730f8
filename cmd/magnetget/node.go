package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/magnetget/magnetget/crawl"
	"github.com/magnetget/magnetget/dht"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "run a long-lived DHT node until interrupted",
		Flags: append(append(dhtFlags(), logFlags()...),
			&cli.StringFlag{Name: "status-addr", Usage: "serve status as JSON at / and Prometheus text at /metrics on this multiaddr, e.g. /ip4/127.0.0.1/tcp/9090"},
			&cli.DurationFlag{Name: "status-interval", Value: time.Minute, Usage: "how often to log the status line"},
			&cli.BoolFlag{Name: "harvest", Usage: "record the infohashes other nodes ask for and announce into the crawl index"},
			crawlDBFlag(),
		),
		Action: nodeAction,
	}
}

func dhtMetrics(s *dhtSet) []metric {
	st := s.Stats()
	return []metric{
		{Name: "dht_nodes_good", Help: "Good nodes in the routing tables.", Value: float64(st.GoodNodes), Gauge: true},
		{Name: "dht_nodes", Help: "Nodes in the routing tables.", Value: float64(st.Nodes), Gauge: true},
		{Name: "dht_queries_in_total", Help: "DHT queries received.", Value: float64(st.QueriesIn)},
		{Name: "dht_queries_out_total", Help: "DHT queries sent.", Value: float64(st.QueriesOut)},
		{Name: "dht_peers_stored", Help: "Announced peers held in the peer store.", Value: float64(st.PeersStored), Gauge: true},
		{Name: "dht_infohashes_stored", Help: "Infohashes with announced peers.", Value: float64(st.Infohashes), Gauge: true},
	}
}

func nodeAction(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageHint("node takes no arguments")
	}
	log := logger(c)
	ctx := c.Context
	var hooks dht.Config
	var cr *crawl.Crawler
	if c.Bool("harvest") {
		x, err := openIndex(c)
		if err != nil {
			return err
		}
		defer x.Close()
		cr = &crawl.Crawler{Index: x, Logger: log}
		hooks = harvestHooks(cr)
	}
	set, err := joinDHT(ctx, c, log, hooks, false)
	if err != nil {
		return err
	}
	defer set.Close()
	if a := c.String("status-addr"); a != "" {
		addr, stop, err := serveStatus(ctx, a, func() []metric { return dhtMetrics(set) }, log)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(c.App.ErrWriter, "status on http://%s/metrics\n", addr)
	}
	fmt.Fprintf(c.App.ErrWriter, "DHT node running on %v; Ctrl-C to stop\n", set.udpMultiaddrs())
	tick := time.NewTicker(c.Duration("status-interval"))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			st := set.Stats()
			fmt.Fprintf(c.App.ErrWriter, "stopping: saving %d nodes\n", st.Nodes)
			return nil
		case <-tick.C:
			st := set.Stats()
			harvested := ""
			if cr != nil {
				harvested = fmt.Sprintf(", harvested %d new infohashes", cr.Progress().Found)
			}
			fmt.Fprintf(c.App.ErrWriter, "%s nodes %d/%d good/total, queries in %d out %d, peers stored %d (%d infohashes)%s\n",
				time.Now().Format(time.TimeOnly), st.GoodNodes, st.Nodes, st.QueriesIn, st.QueriesOut, st.PeersStored, st.Infohashes, harvested)
		}
	}
}

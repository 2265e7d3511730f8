package main

import "github.com/urfave/cli/v2"

func crawlCommand() *cli.Command {
	return &cli.Command{
		Name:  "crawl",
		Usage: "discover infohashes on the DHT (BEP 51 and passive harvesting)",
		Action: func(c *cli.Context) error {
			return cli.Exit("crawl is not built yet", 1)
		},
	}
}

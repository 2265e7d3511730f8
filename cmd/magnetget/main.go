// Command magnetget turns magnet links into files with no central server:
// a DHT node finds peers, metadata comes from those peers (BEP 9), and a
// swarm downloader fetches, verifies and shares the pieces.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

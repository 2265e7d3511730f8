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
	// A reader that goes away (`| head`, `| tee` killed by the same Ctrl-C)
	// must not kill us with SIGPIPE in the middle of a write: that skips
	// the clean shutdown (routing.db saved, resume state written). Ignored,
	// the write fails with EPIPE instead, and brokenPipe stops the command
	// the orderly way.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancelCause(ctx)
	code := run(ctx, os.Args, &pipeWatch{File: os.Stdout, cancel: cancel}, &pipeWatch{File: os.Stderr, cancel: cancel})
	cancel(nil)
	stop()
	os.Exit(code)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/urfave/cli/v2"
)

// run builds the app with the given writers and runs it; tests call it
// in-process. It returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, permuteArgs(app, args))
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := strings.TrimSpace(err.Error()); msg != "" {
			fmt.Fprintln(stderr, "magnetget:", esc(msg))
		}
		return ec.ExitCode()
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "magnetget: interrupted")
		return 130
	}
	fmt.Fprintln(stderr, "magnetget:", esc(err.Error()))
	return 1
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:                   "magnetget",
		Usage:                  "download and share BitTorrent content from magnet links, with no central server",
		UsageText:              "magnetget [command] [options] <magnet-uri | file.torrent>",
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        true,
		UseShortOptionHandling: true,
		Suggest:                true,
		// Errors are printed once, by run, with one prefix.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags:          getFlags(),
		Action:         getAction,
		Commands: []*cli.Command{
			getCommand(),
			metaCommand(),
			lookupCommand(),
			nodeCommand(),
			seedCommand(),
			createCommand(),
			crawlCommand(),
		},
	}
}

// logger returns the slog.Logger the flags ask for, writing to stderr.
func logger(c *cli.Context) *slog.Logger {
	level := slog.LevelWarn
	if c.Bool("verbose") {
		level = slog.LevelInfo
	}
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
}

func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log what happens (info level)"},
		&cli.BoolFlag{Name: "debug", Usage: "log packet-level detail"},
	}
}

// usageError is an error the user can fix by changing the command line.
func usageError(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 2)
}
